"""Contains all the data models used in inputs/outputs"""

from .error import Error
from .evaluate_request import EvaluateRequest
from .evaluate_response import EvaluateResponse
from .evaluate_response_status import EvaluateResponseStatus
from .service_instance import ServiceInstance
from .service_instance_spec import ServiceInstanceSpec

__all__ = (
    "Error",
    "EvaluateRequest",
    "EvaluateResponse",
    "EvaluateResponseStatus",
    "ServiceInstance",
    "ServiceInstanceSpec",
)
