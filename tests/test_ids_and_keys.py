import pytest
from redis.crc import key_slot

from couponsim.errors import InvalidId
from couponsim.ids import MAX_ID_LENGTH, validate_id
from couponsim.keys import CouponKeys, seed_status_key, user_coupons_key


@pytest.mark.parametrize("value", ["c1", "BF-2026.11_28", "a" * MAX_ID_LENGTH, "0"])
def test_valid_ids_pass_through(value: str) -> None:
    assert validate_id("coupon", value) == value


@pytest.mark.parametrize(
    "value",
    ["", "a" * (MAX_ID_LENGTH + 1), "c{1}", "c:1", "c 1", "c*", "c\n", "쿠폰", None, 7],
)
def test_malformed_ids_are_refused_with_the_kind_named(value: object) -> None:
    with pytest.raises(InvalidId, match="coupon ID"):
        validate_id("coupon", value)


def test_every_coupon_key_shares_the_coupons_slot() -> None:
    keys = CouponKeys("bf-2026")
    names = [keys.info, keys.active, keys.stock, keys.issued, keys.holders, keys.queue,
             keys.waiting, keys.request("r-1")]
    assert all("{bf-2026}" in name for name in names)
    assert {key_slot(name.encode()) for name in names} == {key_slot(b"bf-2026")}


def test_seed_names_are_kept() -> None:
    keys = CouponKeys("C")
    assert (keys.stock, keys.issued, keys.active, keys.info, keys.waiting) == (
        "coupon:stock:{C}", "coupon:issued:{C}", "event:active:{C}", "coupon:info:{C}",
        "coupon:waiting:{C}",
    )


@pytest.mark.parametrize(
    "build",
    [lambda: CouponKeys("bad}id"), lambda: CouponKeys("c").request("r:1"),
     lambda: seed_status_key("{r}"), lambda: user_coupons_key("")],
)
def test_keys_are_never_built_from_bad_ids(build: object) -> None:
    with pytest.raises(InvalidId):
        build()  # type: ignore[operator]
