"""Small pieces every package shares: the expected-error type, atomic writes, device choice.

Nothing here imports from the product's packages, so anyone may import it.
"""
