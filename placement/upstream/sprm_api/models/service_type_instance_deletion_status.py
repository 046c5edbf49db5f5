from enum import StrEnum


class ServiceTypeInstanceDeletionStatus(StrEnum):
    FAILED = "FAILED"
    SCHEDULED = "SCHEDULED"

    def __str__(self) -> str:
        return str(self.value)
