"""Contains all the data models used in inputs/outputs"""

from .error import Error
from .service_type_instance import ServiceTypeInstance
from .service_type_instance_deletion_status import ServiceTypeInstanceDeletionStatus
from .service_type_instance_list import ServiceTypeInstanceList
from .service_type_instance_spec import ServiceTypeInstanceSpec

__all__ = (
    "Error",
    "ServiceTypeInstance",
    "ServiceTypeInstanceDeletionStatus",
    "ServiceTypeInstanceList",
    "ServiceTypeInstanceSpec",
)
