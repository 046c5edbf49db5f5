"""Contains all the data models used in inputs/outputs"""

from .health import Health
from .problem import Problem
from .rehydrate_request import RehydrateRequest
from .resource import Resource
from .resource_list import ResourceList
from .resource_spec import ResourceSpec

__all__ = (
    "Health",
    "Problem",
    "RehydrateRequest",
    "Resource",
    "ResourceList",
    "ResourceSpec",
)
