"""Benchmarks of the promo server against a bare gRPC echo server.

``python -m bench`` measures each scenario with a fixed number of calls in
flight for a fixed time, the servers in their own processes on 127.0.0.1, and
prints one table. Benchmarks report; they never fail on speed.
"""
