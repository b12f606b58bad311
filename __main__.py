"""`python -m ember` is the `ember` command."""

from ember.tools.cli import main

raise SystemExit(main())
