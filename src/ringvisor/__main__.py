from ringvisor.cli.main import main

raise SystemExit(main())
