"""Connectors: how documents reach one ERP API (authentication, request shape, reading answers)."""
