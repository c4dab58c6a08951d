"""The demo app's real first migration, under the same name."""

import importlib

Migration = importlib.import_module("testproject.demo.migrations.0001_initial").Migration
