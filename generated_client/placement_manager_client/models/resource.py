from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.resource_spec import ResourceSpec


T = TypeVar("T", bound="Resource")


@_attrs_define
class Resource:
    """A placed resource.

    Attributes:
        catalog_item_instance_id (str): Id of the catalog item instance this resource realises. Example:
            696511df-1fcb-4f66-8ad5-aeb828f383a0.
        spec (ResourceSpec): The service specification (VM, container, database or cluster), as
            the client sent it, before any policy modification.
        id (str | Unset): Id of the resource. Example: 123e4567-e89b-12d3-a456-426614174000.
        path (str | Unset): Canonical name, `resources/<id>`. Example: resources/123e4567-e89b-12d3-a456-426614174000.
        provider_name (str | Unset): The service provider the policies selected. Example: kubevirt-123.
        approval_status (str | Unset): What the policies did with the spec (APPROVED or MODIFIED). Example: APPROVED.
        create_time (datetime.datetime | Unset): When the resource was created.
        update_time (datetime.datetime | Unset): When the resource was last changed.
        status (str | Unset): The instance's status as its service provider last reported it
            (its status events; before any, the status the provider's create
            answer gave), as the provider spells it, e.g. RUNNING or FAILED.
            Absent until the provider has reported one.
             Example: RUNNING.
        status_message (str | Unset): The provider's message with that status, if it gave one.
        status_time (datetime.datetime | Unset): When the provider set that status (the time of its event).
    """

    catalog_item_instance_id: str
    spec: ResourceSpec
    id: str | Unset = UNSET
    path: str | Unset = UNSET
    provider_name: str | Unset = UNSET
    approval_status: str | Unset = UNSET
    create_time: datetime.datetime | Unset = UNSET
    update_time: datetime.datetime | Unset = UNSET
    status: str | Unset = UNSET
    status_message: str | Unset = UNSET
    status_time: datetime.datetime | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        catalog_item_instance_id = self.catalog_item_instance_id

        spec = self.spec.to_dict()

        id = self.id

        path = self.path

        provider_name = self.provider_name

        approval_status = self.approval_status

        create_time: str | Unset = UNSET
        if not isinstance(self.create_time, Unset):
            create_time = self.create_time.isoformat()

        update_time: str | Unset = UNSET
        if not isinstance(self.update_time, Unset):
            update_time = self.update_time.isoformat()

        status = self.status

        status_message = self.status_message

        status_time: str | Unset = UNSET
        if not isinstance(self.status_time, Unset):
            status_time = self.status_time.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "catalog_item_instance_id": catalog_item_instance_id,
                "spec": spec,
            }
        )
        if id is not UNSET:
            field_dict["id"] = id
        if path is not UNSET:
            field_dict["path"] = path
        if provider_name is not UNSET:
            field_dict["provider_name"] = provider_name
        if approval_status is not UNSET:
            field_dict["approval_status"] = approval_status
        if create_time is not UNSET:
            field_dict["create_time"] = create_time
        if update_time is not UNSET:
            field_dict["update_time"] = update_time
        if status is not UNSET:
            field_dict["status"] = status
        if status_message is not UNSET:
            field_dict["status_message"] = status_message
        if status_time is not UNSET:
            field_dict["status_time"] = status_time

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.resource_spec import ResourceSpec  # noqa: PLC0415

        d = dict(src_dict)
        catalog_item_instance_id = d.pop("catalog_item_instance_id")

        spec = ResourceSpec.from_dict(d.pop("spec"))

        id = d.pop("id", UNSET)

        path = d.pop("path", UNSET)

        provider_name = d.pop("provider_name", UNSET)

        approval_status = d.pop("approval_status", UNSET)

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

        status = d.pop("status", UNSET)

        status_message = d.pop("status_message", UNSET)

        _status_time = d.pop("status_time", UNSET)
        status_time: datetime.datetime | Unset
        if isinstance(_status_time, Unset):
            status_time = UNSET
        else:
            status_time = datetime.datetime.fromisoformat(_status_time)

        resource = cls(
            catalog_item_instance_id=catalog_item_instance_id,
            spec=spec,
            id=id,
            path=path,
            provider_name=provider_name,
            approval_status=approval_status,
            create_time=create_time,
            update_time=update_time,
            status=status,
            status_message=status_message,
            status_time=status_time,
        )

        resource.additional_properties = d
        return resource

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
