from triggerd.launch import main

raise SystemExit(main())
