"""`python -m infra`: the `infra` command."""

from infra.entry import main

raise SystemExit(main())
