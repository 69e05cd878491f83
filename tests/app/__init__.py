"""Tests of `mesm serve`'s page. A package so that its conftest does not replace the module name
`conftest` that other test folders import helpers from."""
