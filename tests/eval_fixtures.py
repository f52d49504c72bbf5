from helpers.eval_fixtures import *  # noqa: F403  (moved to tests/helpers/eval_fixtures.py; this name still imports)
