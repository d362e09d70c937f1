"""uws-server: an IVOA UWS 1.1 job execution service."""

from setuptools import find_packages, setup

setup(
    name="uws-server",
    version="0.1.0",
    description="IVOA UWS 1.1 job execution service with provenance (OPUS-compatible)",
    python_requires=">=3.11",
    packages=find_packages(
        include=["uws_server", "uws_server.*", "workers", "workers.*", "uws_client", "uws_client.*"]
    ),
    include_package_data=True,
    package_data={
        "uws_server": ["templates/*", "web/templates/*", "web/static/*", "migrations/*.mako"]
    },
    install_requires=[
        # Pinned: uws_server/request_guard.py and server.py rely on their internals
        # (tests/test_hardening_http.py fails on another version).
        "bottle==0.13.5",
        "cheroot==11.1.2",
        "SQLAlchemy>=2.0",
        # Schema migrations (uws_server/migrations), run at start and by `uws-server db upgrade`
        "alembic>=1.13",
        "psycopg[binary]>=3.1",
        "PyYAML>=6",
        "requests>=2.31",
        "lxml>=5",
        "prov>=2.5,<3",
        "voprov==0.0.4",
        "python-dateutil>=2.8",
        "rdflib>=7",
        "astropy>=6",
        "rocrate>=0.11,<1",
        # ADQL 2.x -> PostgreSQL/pgSphere or MySQL-style SQL (TAP); see uws_server/vo/adql.py
        "queryparser-python3>=0.8,<0.9",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            # the suite on several workers (scripts/run_tests.sh); pinned: tests/parallel.py
            # relies on its scheduler's internals (tests/test_parallel.py fails on a change)
            "pytest-xdist==3.8.0",
            "hypothesis>=6.100",
            "xmlschema>=3",
            "pyvo>=1.5",
            "playwright>=1.45",
            "ruff>=0.5",
            "import-linter>=2.1",  # lint-imports: the import contracts in .importlinter
        ],
        "science": [
            "ctapipe==0.32.0",
            "pyirf~=0.14.0",
            "gammapy==2.1",
            "regions==0.11",
            "matplotlib>=3.8",
        ],
    },
    entry_points={
        "console_scripts": ["uws-server=uws_server.cli:main", "uws=uws_client.cli:main"]
    },
)
