"""`python -m api.cli`: the same as the `suanli` command."""

from api.cli.main import main

raise SystemExit(main())
