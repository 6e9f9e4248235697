from swiftshot.cli import main

raise SystemExit(main())
