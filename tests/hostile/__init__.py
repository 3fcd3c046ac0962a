"""The hostile input campaign: garbage and valid-shaped requests for every promo.v1 RPC."""
