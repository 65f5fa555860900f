"""couponsim: a workbench for flash-sale coupon issuance on Redis.

The business operations live in :mod:`couponsim.flows` as generators of
effects; :mod:`couponsim.drivers` run them against a Redis connection made by
:mod:`couponsim.connection`. DESIGN.md in the repository is the map.
"""

__version__ = "0.1.0"
