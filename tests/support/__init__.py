"""Test support: fixtures and helpers the tests import (`from support.lab_fixtures import ...`);
not tests themselves."""
