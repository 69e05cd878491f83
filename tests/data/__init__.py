"""Data pipeline tests. A package so that its conftest does not replace the module name
`conftest` that other test folders import helpers from."""
