"""The built-in console: what the service did, across every process and host, stored in the project's database.

Add ``"django_observe.console"`` to ``INSTALLED_APPS`` and run ``migrate``; the pages are served at
``observe/`` under the prefix where the project includes ``django_observe.urls``. See docs/console.md.
"""
