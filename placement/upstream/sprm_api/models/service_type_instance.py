from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.service_type_instance_deletion_status import ServiceTypeInstanceDeletionStatus
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.service_type_instance_spec import ServiceTypeInstanceSpec


T = TypeVar("T", bound="ServiceTypeInstance")


@_attrs_define
class ServiceTypeInstance:
    """
    Attributes:
        provider_name (str):
        spec (ServiceTypeInstanceSpec):
        id (str | Unset):
        path (str | Unset):
        status (str | Unset):
        deletion_status (ServiceTypeInstanceDeletionStatus | Unset):
        create_time (datetime.datetime | Unset):
        update_time (datetime.datetime | Unset):
        delete_time (datetime.datetime | Unset):
    """

    provider_name: str
    spec: ServiceTypeInstanceSpec
    id: str | Unset = UNSET
    path: str | Unset = UNSET
    status: str | Unset = UNSET
    deletion_status: ServiceTypeInstanceDeletionStatus | Unset = UNSET
    create_time: datetime.datetime | Unset = UNSET
    update_time: datetime.datetime | Unset = UNSET
    delete_time: datetime.datetime | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        provider_name = self.provider_name

        spec = self.spec.to_dict()

        id = self.id

        path = self.path

        status = self.status

        deletion_status: str | Unset = UNSET
        if not isinstance(self.deletion_status, Unset):
            deletion_status = self.deletion_status.value

        create_time: str | Unset = UNSET
        if not isinstance(self.create_time, Unset):
            create_time = self.create_time.isoformat()

        update_time: str | Unset = UNSET
        if not isinstance(self.update_time, Unset):
            update_time = self.update_time.isoformat()

        delete_time: str | Unset = UNSET
        if not isinstance(self.delete_time, Unset):
            delete_time = self.delete_time.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "provider_name": provider_name,
                "spec": spec,
            }
        )
        if id is not UNSET:
            field_dict["id"] = id
        if path is not UNSET:
            field_dict["path"] = path
        if status is not UNSET:
            field_dict["status"] = status
        if deletion_status is not UNSET:
            field_dict["deletion_status"] = deletion_status
        if create_time is not UNSET:
            field_dict["create_time"] = create_time
        if update_time is not UNSET:
            field_dict["update_time"] = update_time
        if delete_time is not UNSET:
            field_dict["delete_time"] = delete_time

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.service_type_instance_spec import ServiceTypeInstanceSpec  # noqa: PLC0415

        d = dict(src_dict)
        provider_name = d.pop("provider_name")

        spec = ServiceTypeInstanceSpec.from_dict(d.pop("spec"))

        id = d.pop("id", UNSET)

        path = d.pop("path", UNSET)

        status = d.pop("status", UNSET)

        _deletion_status = d.pop("deletion_status", UNSET)
        deletion_status: ServiceTypeInstanceDeletionStatus | Unset
        if isinstance(_deletion_status, Unset):
            deletion_status = UNSET
        else:
            deletion_status = ServiceTypeInstanceDeletionStatus(_deletion_status)

        _create_time = d.pop("create_time", UNSET)
        create_time: datetime.datetime | Unset
        if isinstance(_create_time, Unset):
            create_time = UNSET
        else:
            create_time = datetime.datetime.fromisoformat(_create_time)

        _update_time = d.pop("update_time", UNSET)
        update_time: datetime.datetime | Unset
        if isinstance(_update_time, Unset):
            update_time = UNSET
        else:
            update_time = datetime.datetime.fromisoformat(_update_time)

        _delete_time = d.pop("delete_time", UNSET)
        delete_time: datetime.datetime | Unset
        if isinstance(_delete_time, Unset):
            delete_time = UNSET
        else:
            delete_time = datetime.datetime.fromisoformat(_delete_time)

        service_type_instance = cls(
            provider_name=provider_name,
            spec=spec,
            id=id,
            path=path,
            status=status,
            deletion_status=deletion_status,
            create_time=create_time,
            update_time=update_time,
            delete_time=delete_time,
        )

        service_type_instance.additional_properties = d
        return service_type_instance

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
