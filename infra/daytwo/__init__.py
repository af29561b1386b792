"""Day-two commands: what runs against a deployed stack (`infra verify`, and the evidence it leaves).

Kept apart from the plan/check core (infra/mockrun.py, check.py, checklist.py), which it uses and which
reads its evidence records only through `platform_infra.infra.daytwo.evidence`.
"""
