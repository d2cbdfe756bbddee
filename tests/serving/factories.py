"""factory_boy factories for serving's tables."""

from __future__ import annotations

import factory

from apps.serving.models import Placement
from tests.fleet.factories import GIB, DeviceFactory
from tests.models.factories import ModelVersionFactory


class PlacementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Placement

    version = factory.SubFactory(ModelVersionFactory)
    device = factory.SubFactory(DeviceFactory)
    reserved_bytes = 20 * GIB
