"""The hardening suite (issue 5): fuzzing, faults and security, bounded in time for CI.

- `test_config_fuzz.py`: mutations of the real 2i2c files through validate and plan;
- `test_webhook_fuzz.py`: signed garbage against the real app and handlers;
- `test_faults_plan.py`: a GitHub fault at every call of a PR plan, and token expiry;
- `test_security.py`: replays, forged signatures, settings in PRs, secrets never shown.

`harness.py` (fault runs over any scenario) and `support.py` (Hypothesis budgets, loop
watch, exchange recording, secret scanning) are shared with part 2 (deploy-side faults).

CI runs `pytest tests/hardening` with the derandomized profile (`HYPOTHESIS_PROFILE=ci`,
the default): under a minute on two cores. `HYPOTHESIS_PROFILE=long` draws twenty times
the examples, randomly, for a manual soak (about 15 minutes).
"""
