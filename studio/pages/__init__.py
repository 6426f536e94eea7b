"""The studio page, a module per part: each builds its components and wires top-level handlers that tests
call without a browser."""
