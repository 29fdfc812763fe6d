"""Tests of mxbai-triton; run with `make test`."""
