"""`python -m ember` is the `ember` command."""

from ember.tools.cli.main import main

raise SystemExit(main())
