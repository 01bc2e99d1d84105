"""Fixtures for the protocol unit tests: the seed VM's binding table and gateway params."""

from __future__ import annotations

import pytest

from protocols.arp import ArpResponder
from protocols.bindings import BindingTable
from protocols.dhcpv4.server import Dhcpv4Responder
from protocols.params import GatewayParams
from tests.helpers import seed_params, seed_table


@pytest.fixture
def params() -> GatewayParams:
    return seed_params()


@pytest.fixture
def table() -> BindingTable:
    return seed_table()


@pytest.fixture
def arp(params, table) -> ArpResponder:
    return ArpResponder(params, table)


@pytest.fixture
def dhcp(params, table) -> Dhcpv4Responder:
    return Dhcpv4Responder(params, table, node="node-a")
