"""DCM placement service: policy-evaluated, durable placement of resources."""

import warnings

# Connexion imports Starlette's test client at import time, which warns about httpx on
# every start of the service; the test client is not used by the service.
warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
