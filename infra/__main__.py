"""`python -m platform_infra.infra`: the `infra` command."""

from platform_infra.infra.entry import main

raise SystemExit(main())
