from uws_server.cli import main

raise SystemExit(main())
