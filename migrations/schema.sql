--
-- PostgreSQL database dump
--



SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: webhook_inbox_row; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.webhook_inbox_row AS (
	id uuid,
	workflow_id uuid,
	version_id uuid,
	trigger_id uuid,
	trigger_name text,
	dedupe_key text,
	ttl_ms bigint,
	input text,
	method text,
	path text,
	query text,
	headers text,
	body bytea,
	remote_addr text,
	received_at timestamp with time zone
);


--
-- Name: triggerd_execution_ended_unheld(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_execution_ended_unheld() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM node_outputs_resume WHERE execution_id = NEW.id;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_executions_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_executions_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM webhook_requests r USING deleted d WHERE r.id = d.id;
    DELETE FROM node_executions
     WHERE execution_id = ANY(ARRAY(SELECT d.id FROM deleted d));
    DELETE FROM node_outputs_resume o USING deleted d WHERE o.execution_id = d.id;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_notify_triggers_changed(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_notify_triggers_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('triggerd_triggers',
                          json_build_object('op', TG_OP, 'id', c.id)::text)
        FROM triggerd_old c;
    ELSE
        PERFORM pg_notify('triggerd_triggers',
                          json_build_object('op', TG_OP, 'id', c.id)::text)
        FROM triggerd_new c;
    END IF;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_refuse_published_version_change(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_refuse_published_version_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.published_at IS NOT NULL AND (
           NEW.graph IS DISTINCT FROM OLD.graph
        OR NEW.parameter_schema IS DISTINCT FROM OLD.parameter_schema
        OR NEW.env_config IS DISTINCT FROM OLD.env_config
        OR NEW.timeout_ms IS DISTINCT FROM OLD.timeout_ms
        OR NEW.version IS DISTINCT FROM OLD.version
        OR NEW.workflow_id IS DISTINCT FROM OLD.workflow_id
        OR NEW.published_at IS DISTINCT FROM OLD.published_at)
    THEN
        RAISE EXCEPTION 'workflow version % of workflow % is published and immutable; publish a new version instead',
            OLD.version, OLD.workflow_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;


--
-- Name: triggerd_trigger_moved(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_trigger_moved() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = NEW.workflow_id FOR KEY SHARE OF w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "workflow_triggers" violates foreign key constraint "workflow_triggers_workflow_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'workflow_triggers_workflow_id_fkey',
                  TABLE = 'workflow_triggers',
                  DETAIL = format('Key (workflow_id)=(%s) is not present in table "workflows".',
                                  NEW.workflow_id);
    END IF;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_triggers_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_triggers_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM trigger_slots s USING deleted d WHERE s.trigger_id = d.id;
    UPDATE webhook_requests r SET trigger_id = NULL
    FROM deleted d WHERE r.trigger_id = d.id;
    UPDATE workflow_executions e SET trigger_id = NULL
    FROM deleted d WHERE e.trigger_id = d.id;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_triggers_inserted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_triggers_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    wanted bigint;
    locked bigint;
    missing uuid;
BEGIN
    SELECT count(DISTINCT workflow_id) INTO wanted FROM triggerd_new;
    PERFORM 1 FROM workflows w
     WHERE w.id = ANY(ARRAY(SELECT DISTINCT n.workflow_id FROM triggerd_new n))
     ORDER BY w.id FOR KEY SHARE OF w;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < wanted THEN
        SELECT n.workflow_id INTO missing FROM triggerd_new n
         WHERE NOT EXISTS (SELECT 1 FROM workflows w WHERE w.id = n.workflow_id) LIMIT 1;
        RAISE EXCEPTION 'insert or update on table "workflow_triggers" violates foreign key constraint "workflow_triggers_workflow_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'workflow_triggers_workflow_id_fkey',
                  TABLE = 'workflow_triggers',
                  DETAIL = format('Key (workflow_id)=(%s) is not present in table "workflows".',
                                  missing);
    END IF;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_versions_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_versions_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE workflow_executions e SET workflow_version_id = NULL
    FROM deleted d WHERE e.workflow_version_id = d.id;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_workflows_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_workflows_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM workflow_triggers
     WHERE workflow_id = ANY(ARRAY(SELECT d.id FROM deleted d));
    DELETE FROM workflow_executions e USING deleted d WHERE e.workflow_id = d.id;
    RETURN NULL;
END;
$$;


--
-- Name: triggerd_workflows_truncated(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.triggerd_workflows_truncated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    TRUNCATE workflow_triggers CASCADE;
    RETURN NULL;
END;
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: api_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.api_tokens (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    tenant text,
    hash bytea NOT NULL,
    prefix text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_used_at timestamp with time zone,
    revoked_at timestamp with time zone,
    expires_at timestamp with time zone,
    CONSTRAINT api_tokens_hash_length CHECK ((octet_length(hash) = 32)),
    CONSTRAINT api_tokens_role_check CHECK ((role = ANY (ARRAY['admin'::text, 'viewer'::text])))
);


--
-- Name: applied_definitions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.applied_definitions (
    fingerprint text NOT NULL,
    workflow_ids uuid[] NOT NULL,
    zones text[] NOT NULL,
    workflows integer NOT NULL,
    triggers integer NOT NULL,
    state text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: approvals; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.approvals (
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    message text,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone
);


--
-- Name: audit_log; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    tenant_id text DEFAULT 'default'::text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    target_kind text NOT NULL,
    target text NOT NULL,
    target_id uuid,
    note text,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL
);


--
-- Name: audit_log_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: backfills; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.backfills (
    id uuid NOT NULL,
    trigger_id uuid NOT NULL,
    range_from timestamp with time zone NOT NULL,
    range_to timestamp with time zone NOT NULL,
    only_missing boolean NOT NULL,
    overlap text NOT NULL,
    rate_per_second double precision NOT NULL,
    slots timestamp with time zone[] NOT NULL,
    next_index integer DEFAULT 0 NOT NULL,
    started integer DEFAULT 0 NOT NULL,
    skipped integer DEFAULT 0 NOT NULL,
    state text DEFAULT 'running'::text NOT NULL,
    actor text NOT NULL,
    note text,
    owner text,
    lease_expires_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    CONSTRAINT backfills_overlap_check CHECK ((overlap = ANY (ARRAY['allow'::text, 'skip'::text, 'buffer_one'::text, 'cancel_previous'::text]))),
    CONSTRAINT backfills_rate_per_second_check CHECK ((rate_per_second > (0)::double precision)),
    CONSTRAINT backfills_state_check CHECK ((state = ANY (ARRAY['running'::text, 'done'::text, 'canceled'::text])))
);


--
-- Name: console_sessions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.console_sessions (
    id_hash bytea NOT NULL,
    principal text NOT NULL,
    role text NOT NULL,
    tenant text,
    token_id uuid,
    config_hash bytea,
    csrf text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT console_sessions_id_hash_check CHECK ((octet_length(id_hash) = 32)),
    CONSTRAINT console_sessions_role_check CHECK ((role = ANY (ARRAY['admin'::text, 'viewer'::text])))
);


--
-- Name: debounce_windows; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.debounce_windows (
    trigger_id uuid NOT NULL,
    key text NOT NULL,
    execution_id uuid NOT NULL,
    opened_at timestamp with time zone NOT NULL,
    due_at timestamp with time zone NOT NULL
);


--
-- Name: memory_writes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.memory_writes (
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    result jsonb NOT NULL,
    written_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: node_executions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.node_executions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    node_type text NOT NULL,
    status text NOT NULL,
    attempt integer DEFAULT 1 NOT NULL,
    input jsonb,
    output jsonb,
    branch text,
    error_code text,
    error_message text,
    start_time timestamp with time zone,
    end_time timestamp with time zone,
    execution_time_ms double precision,
    from_node_id text,
    edge_condition text,
    CONSTRAINT node_executions_attempt_check CHECK ((attempt >= 1)),
    CONSTRAINT node_executions_status_check CHECK ((status = ANY (ARRAY['RUNNING'::text, 'SUCCESS'::text, 'ERROR'::text, 'SKIPPED'::text, 'CANCELED'::text, 'WAITING'::text])))
)
WITH (autovacuum_vacuum_cost_delay='10');


--
-- Name: node_outputs_resume; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.node_outputs_resume (
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    ciphertext bytea NOT NULL
);
ALTER TABLE ONLY public.node_outputs_resume ALTER COLUMN ciphertext SET STORAGE EXTERNAL;


--
-- Name: resume_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.resume_tokens (
    token_hash bytea NOT NULL,
    execution_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    decision text,
    note text,
    decided_by text,
    input jsonb,
    decided_at timestamp with time zone,
    used_by_node text,
    used_at timestamp with time zone,
    CONSTRAINT resume_tokens_decision_check CHECK ((decision = ANY (ARRAY['approved'::text, 'rejected'::text])))
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: trigger_slots; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.trigger_slots (
    trigger_id uuid NOT NULL,
    scheduled_for timestamp with time zone NOT NULL,
    outcome text NOT NULL,
    execution_id uuid,
    decided_at timestamp with time zone DEFAULT now() NOT NULL,
    detail text,
    CONSTRAINT trigger_slots_outcome_check CHECK ((outcome = ANY (ARRAY['fired'::text, 'skipped_overlap'::text, 'skipped_misfire'::text, 'skipped_disabled'::text, 'buffered'::text, 'canceled_previous'::text, 'duplicate'::text, 'skipped_paused'::text, 'skipped_manual'::text])))
)
WITH (autovacuum_vacuum_cost_delay='10');


--
-- Name: trigger_state; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.trigger_state (
    trigger_id uuid NOT NULL,
    paused boolean DEFAULT false NOT NULL,
    note text,
    changed_by text,
    changed_at timestamp with time zone,
    floor_at timestamp with time zone,
    scheduled_runs bigint DEFAULT 0 NOT NULL,
    consecutive_failures integer DEFAULT 0 NOT NULL,
    completed_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    failed_executions uuid[] DEFAULT '{}'::uuid[] NOT NULL,
    last_success_at timestamp with time zone,
    CONSTRAINT trigger_state_consecutive_failures_check CHECK ((consecutive_failures >= 0)),
    CONSTRAINT trigger_state_scheduled_runs_check CHECK ((scheduled_runs >= 0))
);


--
-- Name: webhook_requests; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.webhook_requests (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    trigger_id uuid,
    method text NOT NULL,
    path text NOT NULL,
    query jsonb DEFAULT '{}'::jsonb NOT NULL,
    headers jsonb DEFAULT '{}'::jsonb NOT NULL,
    body bytea DEFAULT '\x'::bytea NOT NULL,
    remote_addr text,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    execution_id uuid,
    outcome text DEFAULT 'accepted'::text NOT NULL,
    delivery_count integer DEFAULT 1 NOT NULL,
    last_seen_at timestamp with time zone,
    detail text,
    dedupe_key text,
    dedupe_expires_at timestamp with time zone,
    CONSTRAINT webhook_requests_delivery_count_check CHECK ((delivery_count >= 1)),
    CONSTRAINT webhook_requests_outcome_check CHECK ((outcome = ANY (ARRAY['accepted'::text, 'filtered'::text, 'debounced'::text]))),
    CONSTRAINT webhook_requests_shares_execution_id CHECK (((execution_id = id) OR (outcome = 'debounced'::text)))
)
WITH (autovacuum_vacuum_cost_delay='10');


--
-- Name: workflow_executions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workflow_executions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    workflow_id uuid NOT NULL,
    workflow_version_id uuid,
    trigger_id uuid,
    trigger_name text,
    trigger_type text NOT NULL,
    dedupe_key text,
    dedupe_expires_at timestamp with time zone,
    status text DEFAULT 'NEW'::text NOT NULL,
    input jsonb DEFAULT '{}'::jsonb NOT NULL,
    output jsonb,
    context jsonb DEFAULT '{}'::jsonb NOT NULL,
    error_code text,
    error_message text,
    scheduled_for timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    start_time timestamp with time zone,
    end_time timestamp with time zone,
    attempt integer DEFAULT 0 NOT NULL,
    lease_owner text,
    lease_expires_at timestamp with time zone,
    resume_at timestamp with time zone,
    cancel_requested boolean DEFAULT false NOT NULL,
    retry_of uuid,
    replay_of uuid,
    not_before timestamp with time zone,
    concurrency_key text,
    concurrency_limit integer,
    parent_execution_id uuid,
    test boolean DEFAULT false NOT NULL,
    tenant_id text DEFAULT 'default'::text NOT NULL,
    agent_id text,
    session_id text,
    conversation_id text,
    correlation jsonb,
    worked_at timestamp with time zone,
    idle_ms bigint DEFAULT 0 NOT NULL,
    CONSTRAINT workflow_executions_concurrency_limit_check CHECK ((concurrency_limit >= 1)),
    CONSTRAINT workflow_executions_concurrency_pair CHECK (((concurrency_key IS NULL) = (concurrency_limit IS NULL))),
    CONSTRAINT workflow_executions_status_check CHECK ((status = ANY (ARRAY['NEW'::text, 'RUNNING'::text, 'WAITING'::text, 'SUCCESS'::text, 'ERROR'::text, 'CANCELED'::text])))
);


--
-- Name: workflow_memory; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workflow_memory (
    workflow_id uuid NOT NULL,
    key text NOT NULL,
    value jsonb NOT NULL,
    expires_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT workflow_memory_key_check CHECK (((length(key) >= 1) AND (length(key) <= 512)))
);


--
-- Name: workflow_triggers; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workflow_triggers (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    workflow_id uuid NOT NULL,
    version integer,
    name text NOT NULL,
    type text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    config jsonb DEFAULT '{}'::jsonb NOT NULL,
    input jsonb DEFAULT '{}'::jsonb NOT NULL,
    enabled_at timestamp with time zone DEFAULT now() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT 'default'::text NOT NULL,
    CONSTRAINT workflow_triggers_type_check CHECK ((type = ANY (ARRAY['cron'::text, 'interval'::text, 'webhook'::text, 'manual'::text]))),
    CONSTRAINT workflow_triggers_version_check CHECK (((version IS NULL) OR (version >= 1)))
);


--
-- Name: workflow_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workflow_versions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    workflow_id uuid NOT NULL,
    version integer NOT NULL,
    graph jsonb NOT NULL,
    parameter_schema jsonb DEFAULT '{}'::jsonb NOT NULL,
    env_config jsonb DEFAULT '{}'::jsonb NOT NULL,
    timeout_ms bigint DEFAULT 3600000 NOT NULL,
    is_latest boolean DEFAULT false NOT NULL,
    published_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT workflow_versions_timeout_ms_check CHECK ((timeout_ms > 0)),
    CONSTRAINT workflow_versions_version_check CHECK ((version >= 1))
);


--
-- Name: workflows; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workflows (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    tenant_id text DEFAULT 'default'::text NOT NULL,
    key text NOT NULL,
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    status text DEFAULT 'active'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT workflows_status_check CHECK ((status = ANY (ARRAY['draft'::text, 'active'::text, 'archived'::text, 'test'::text])))
);


--
-- Name: zone_rules; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.zone_rules (
    zone text NOT NULL,
    fingerprint text NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: api_tokens api_tokens_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_hash_key UNIQUE (hash);


--
-- Name: api_tokens api_tokens_name_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_name_key UNIQUE (name);


--
-- Name: api_tokens api_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (id);


--
-- Name: applied_definitions applied_definitions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.applied_definitions
    ADD CONSTRAINT applied_definitions_pkey PRIMARY KEY (fingerprint);


--
-- Name: approvals approvals_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.approvals
    ADD CONSTRAINT approvals_pkey PRIMARY KEY (execution_id, node_id);


--
-- Name: audit_log audit_log_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);


--
-- Name: backfills backfills_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfills
    ADD CONSTRAINT backfills_pkey PRIMARY KEY (id);


--
-- Name: console_sessions console_sessions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.console_sessions
    ADD CONSTRAINT console_sessions_pkey PRIMARY KEY (id_hash);


--
-- Name: debounce_windows debounce_windows_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.debounce_windows
    ADD CONSTRAINT debounce_windows_pkey PRIMARY KEY (trigger_id, key);


--
-- Name: memory_writes memory_writes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.memory_writes
    ADD CONSTRAINT memory_writes_pkey PRIMARY KEY (execution_id, node_id);


--
-- Name: node_executions node_executions_attempt; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.node_executions
    ADD CONSTRAINT node_executions_attempt UNIQUE (execution_id, node_id, attempt);


--
-- Name: node_executions node_executions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.node_executions
    ADD CONSTRAINT node_executions_pkey PRIMARY KEY (id);


--
-- Name: node_outputs_resume node_outputs_resume_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.node_outputs_resume
    ADD CONSTRAINT node_outputs_resume_pkey PRIMARY KEY (execution_id, node_id, attempt);


--
-- Name: resume_tokens resume_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.resume_tokens
    ADD CONSTRAINT resume_tokens_pkey PRIMARY KEY (token_hash);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: trigger_slots trigger_slots_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.trigger_slots
    ADD CONSTRAINT trigger_slots_pkey PRIMARY KEY (trigger_id, scheduled_for);


--
-- Name: trigger_state trigger_state_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.trigger_state
    ADD CONSTRAINT trigger_state_pkey PRIMARY KEY (trigger_id);


--
-- Name: webhook_requests webhook_requests_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhook_requests
    ADD CONSTRAINT webhook_requests_pkey PRIMARY KEY (id);


--
-- Name: workflow_executions workflow_executions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_executions
    ADD CONSTRAINT workflow_executions_pkey PRIMARY KEY (id);


--
-- Name: workflow_executions workflow_executions_trigger_type_check; Type: CHECK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE public.workflow_executions
    ADD CONSTRAINT workflow_executions_trigger_type_check CHECK ((trigger_type = ANY (ARRAY['cron'::text, 'interval'::text, 'webhook'::text, 'manual'::text, 'retry'::text, 'on_failure'::text, 'workflow'::text]))) NOT VALID;


--
-- Name: workflow_memory workflow_memory_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_memory
    ADD CONSTRAINT workflow_memory_pkey PRIMARY KEY (workflow_id, key);


--
-- Name: workflow_triggers workflow_triggers_name; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_triggers
    ADD CONSTRAINT workflow_triggers_name UNIQUE (workflow_id, name);


--
-- Name: workflow_triggers workflow_triggers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_triggers
    ADD CONSTRAINT workflow_triggers_pkey PRIMARY KEY (id);


--
-- Name: workflow_versions workflow_versions_number; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_versions
    ADD CONSTRAINT workflow_versions_number UNIQUE (workflow_id, version);


--
-- Name: workflow_versions workflow_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_versions
    ADD CONSTRAINT workflow_versions_pkey PRIMARY KEY (id);


--
-- Name: workflows workflows_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflows
    ADD CONSTRAINT workflows_pkey PRIMARY KEY (id);


--
-- Name: workflows workflows_tenant_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflows
    ADD CONSTRAINT workflows_tenant_key UNIQUE (tenant_id, key);


--
-- Name: zone_rules zone_rules_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.zone_rules
    ADD CONSTRAINT zone_rules_pkey PRIMARY KEY (zone);


--
-- Name: applied_definitions_applied_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX applied_definitions_applied_at ON public.applied_definitions USING btree (applied_at);


--
-- Name: audit_log_target; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_log_target ON public.audit_log USING btree (target, id DESC);


--
-- Name: audit_log_tenant; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_log_tenant ON public.audit_log USING btree (tenant_id, id DESC);


--
-- Name: backfills_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX backfills_created ON public.backfills USING btree (created_at DESC, id DESC);


--
-- Name: backfills_running; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX backfills_running ON public.backfills USING btree (created_at) WHERE (state = 'running'::text);


--
-- Name: console_sessions_expires; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX console_sessions_expires ON public.console_sessions USING btree (expires_at);


--
-- Name: resume_tokens_execution; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX resume_tokens_execution ON public.resume_tokens USING btree (execution_id);


--
-- Name: trigger_slots_scheduled; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX trigger_slots_scheduled ON public.trigger_slots USING btree (scheduled_for);


--
-- Name: webhook_requests_folded_delivery; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_requests_folded_delivery ON public.webhook_requests USING btree (trigger_id, dedupe_key) WHERE (dedupe_key IS NOT NULL);


--
-- Name: webhook_requests_no_run_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_requests_no_run_received ON public.webhook_requests USING btree (received_at) WHERE ((execution_id IS NULL) OR (outcome = 'debounced'::text));


--
-- Name: webhook_requests_outcome_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_requests_outcome_id ON public.webhook_requests USING btree (outcome, id DESC);


--
-- Name: webhook_requests_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_requests_received ON public.webhook_requests USING btree (received_at);


--
-- Name: webhook_requests_trigger_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_requests_trigger_id ON public.webhook_requests USING btree (trigger_id, id DESC);


--
-- Name: webhook_requests_trigger_outcome_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_requests_trigger_outcome_id ON public.webhook_requests USING btree (trigger_id, outcome, id DESC);


--
-- Name: workflow_executions_active_children; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_active_children ON public.workflow_executions USING btree (parent_execution_id) WHERE ((parent_execution_id IS NOT NULL) AND (status = ANY (ARRAY['NEW'::text, 'RUNNING'::text, 'WAITING'::text])));


--
-- Name: workflow_executions_agent; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_agent ON public.workflow_executions USING btree (agent_id, created_at DESC, id DESC) WHERE (agent_id IS NOT NULL);


--
-- Name: workflow_executions_concurrency; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_concurrency ON public.workflow_executions USING btree (trigger_id, concurrency_key) WHERE ((concurrency_key IS NOT NULL) AND (status = ANY (ARRAY['RUNNING'::text, 'WAITING'::text])));


--
-- Name: workflow_executions_conversation; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_conversation ON public.workflow_executions USING btree (conversation_id, created_at DESC, id DESC) WHERE (conversation_id IS NOT NULL);


--
-- Name: workflow_executions_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_created ON public.workflow_executions USING btree (created_at DESC, id DESC);


--
-- Name: workflow_executions_dedupe_expiry; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_dedupe_expiry ON public.workflow_executions USING btree (dedupe_expires_at) WHERE (dedupe_expires_at IS NOT NULL);


--
-- Name: workflow_executions_dedupe_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX workflow_executions_dedupe_key ON public.workflow_executions USING btree (trigger_id, dedupe_key) WHERE (dedupe_key IS NOT NULL);


--
-- Name: workflow_executions_held; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_held ON public.workflow_executions USING btree (created_at) WHERE ((status = 'NEW'::text) AND ((not_before IS NOT NULL) OR (concurrency_key IS NOT NULL)));


--
-- Name: workflow_executions_parent; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_parent ON public.workflow_executions USING btree (parent_execution_id) WHERE (parent_execution_id IS NOT NULL);


--
-- Name: workflow_executions_replay_of; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_replay_of ON public.workflow_executions USING btree (replay_of) WHERE (replay_of IS NOT NULL);


--
-- Name: workflow_executions_retry_of; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_retry_of ON public.workflow_executions USING btree (retry_of) WHERE (retry_of IS NOT NULL);


--
-- Name: workflow_executions_running_lease; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_running_lease ON public.workflow_executions USING btree (lease_expires_at) WHERE (status = 'RUNNING'::text);


--
-- Name: workflow_executions_session; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_session ON public.workflow_executions USING btree (session_id, created_at DESC, id DESC) WHERE (session_id IS NOT NULL);


--
-- Name: workflow_executions_status_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_status_created ON public.workflow_executions USING btree (status, created_at DESC, id DESC);


--
-- Name: workflow_executions_tenant_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_tenant_created ON public.workflow_executions USING btree (tenant_id, created_at DESC, id DESC);


--
-- Name: workflow_executions_tenant_new; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_tenant_new ON public.workflow_executions USING btree (tenant_id, created_at) WHERE ((status = 'NEW'::text) AND (not_before IS NULL) AND (concurrency_key IS NULL));


--
-- Name: workflow_executions_test; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_test ON public.workflow_executions USING btree (created_at DESC, id DESC) WHERE test;


--
-- Name: workflow_executions_trigger_active; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_trigger_active ON public.workflow_executions USING btree (trigger_id) WHERE (status = ANY (ARRAY['NEW'::text, 'RUNNING'::text, 'WAITING'::text]));


--
-- Name: workflow_executions_trigger_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_trigger_created ON public.workflow_executions USING btree (trigger_id, created_at DESC, id DESC);


--
-- Name: workflow_executions_waiting; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_waiting ON public.workflow_executions USING btree (resume_at) WHERE (status = 'WAITING'::text);


--
-- Name: workflow_executions_workflow_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_executions_workflow_created ON public.workflow_executions USING btree (workflow_id, created_at DESC, id DESC);


--
-- Name: workflow_memory_expires; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_memory_expires ON public.workflow_memory USING btree (expires_at) WHERE (expires_at IS NOT NULL);


--
-- Name: workflow_triggers_enabled_type; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_triggers_enabled_type ON public.workflow_triggers USING btree (type) WHERE enabled;


--
-- Name: workflow_triggers_monitored; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_triggers_monitored ON public.workflow_triggers USING btree (id) WHERE ((config ->> 'monitor'::text) = 'true'::text);


--
-- Name: workflow_triggers_tenant_webhooks; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflow_triggers_tenant_webhooks ON public.workflow_triggers USING btree (tenant_id) WHERE (type = 'webhook'::text);


--
-- Name: workflow_triggers_webhook_path; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX workflow_triggers_webhook_path ON public.workflow_triggers USING btree (tenant_id, ((config ->> 'path'::text))) WHERE ((type = 'webhook'::text) AND enabled);


--
-- Name: workflow_versions_one_latest; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX workflow_versions_one_latest ON public.workflow_versions USING btree (workflow_id) WHERE is_latest;


--
-- Name: workflows_key; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflows_key ON public.workflows USING btree (key, id);


--
-- Name: workflows_test_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflows_test_created ON public.workflows USING btree (created_at) WHERE (status = 'test'::text);


--
-- Name: workflow_executions workflow_executions_deleted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_executions_deleted AFTER DELETE ON public.workflow_executions REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_executions_deleted();


--
-- Name: workflow_executions workflow_executions_ended_unheld; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_executions_ended_unheld AFTER UPDATE OF status ON public.workflow_executions FOR EACH ROW WHEN (((old.status = ANY (ARRAY['NEW'::text, 'WAITING'::text])) AND (new.status = ANY (ARRAY['SUCCESS'::text, 'ERROR'::text, 'CANCELED'::text])))) EXECUTE FUNCTION public.triggerd_execution_ended_unheld();


--
-- Name: workflow_triggers workflow_triggers_deleted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_triggers_deleted AFTER DELETE ON public.workflow_triggers REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_triggers_deleted();


--
-- Name: workflow_triggers workflow_triggers_deleted_notify; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_triggers_deleted_notify AFTER DELETE ON public.workflow_triggers REFERENCING OLD TABLE AS triggerd_old FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_notify_triggers_changed();


--
-- Name: workflow_triggers workflow_triggers_inserted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_triggers_inserted AFTER INSERT ON public.workflow_triggers REFERENCING NEW TABLE AS triggerd_new FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_triggers_inserted();


--
-- Name: workflow_triggers workflow_triggers_inserted_notify; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_triggers_inserted_notify AFTER INSERT ON public.workflow_triggers REFERENCING NEW TABLE AS triggerd_new FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_notify_triggers_changed();


--
-- Name: workflow_triggers workflow_triggers_moved; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_triggers_moved AFTER UPDATE OF workflow_id ON public.workflow_triggers FOR EACH ROW WHEN ((old.workflow_id IS DISTINCT FROM new.workflow_id)) EXECUTE FUNCTION public.triggerd_trigger_moved();


--
-- Name: workflow_triggers workflow_triggers_updated_notify; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_triggers_updated_notify AFTER UPDATE ON public.workflow_triggers REFERENCING NEW TABLE AS triggerd_new FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_notify_triggers_changed();


--
-- Name: workflow_versions workflow_versions_deleted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_versions_deleted AFTER DELETE ON public.workflow_versions REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_versions_deleted();


--
-- Name: workflow_versions workflow_versions_immutable; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflow_versions_immutable BEFORE UPDATE ON public.workflow_versions FOR EACH ROW EXECUTE FUNCTION public.triggerd_refuse_published_version_change();


--
-- Name: workflows workflows_deleted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflows_deleted AFTER DELETE ON public.workflows REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_workflows_deleted();


--
-- Name: workflows workflows_truncated; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER workflows_truncated AFTER TRUNCATE ON public.workflows FOR EACH STATEMENT EXECUTE FUNCTION public.triggerd_workflows_truncated();


--
-- Name: approvals approvals_execution_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.approvals
    ADD CONSTRAINT approvals_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES public.workflow_executions(id) ON DELETE CASCADE;


--
-- Name: backfills backfills_trigger_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.backfills
    ADD CONSTRAINT backfills_trigger_id_fkey FOREIGN KEY (trigger_id) REFERENCES public.workflow_triggers(id) ON DELETE CASCADE;


--
-- Name: console_sessions console_sessions_token_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.console_sessions
    ADD CONSTRAINT console_sessions_token_id_fkey FOREIGN KEY (token_id) REFERENCES public.api_tokens(id) ON DELETE CASCADE;


--
-- Name: debounce_windows debounce_windows_trigger_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.debounce_windows
    ADD CONSTRAINT debounce_windows_trigger_id_fkey FOREIGN KEY (trigger_id) REFERENCES public.workflow_triggers(id) ON DELETE CASCADE;


--
-- Name: memory_writes memory_writes_execution_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.memory_writes
    ADD CONSTRAINT memory_writes_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES public.workflow_executions(id) ON DELETE CASCADE;


--
-- Name: resume_tokens resume_tokens_execution_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.resume_tokens
    ADD CONSTRAINT resume_tokens_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES public.workflow_executions(id) ON DELETE CASCADE;


--
-- Name: trigger_state trigger_state_trigger_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.trigger_state
    ADD CONSTRAINT trigger_state_trigger_id_fkey FOREIGN KEY (trigger_id) REFERENCES public.workflow_triggers(id) ON DELETE CASCADE;


--
-- Name: workflow_executions workflow_executions_retry_of_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_executions
    ADD CONSTRAINT workflow_executions_retry_of_fkey FOREIGN KEY (retry_of) REFERENCES public.workflow_executions(id) ON DELETE SET NULL;


--
-- Name: workflow_memory workflow_memory_workflow_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_memory
    ADD CONSTRAINT workflow_memory_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES public.workflows(id) ON DELETE CASCADE;


--
-- Name: workflow_versions workflow_versions_workflow_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_versions
    ADD CONSTRAINT workflow_versions_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES public.workflows(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--
