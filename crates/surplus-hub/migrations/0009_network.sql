-- The network a device last reached the hub from (an IPv4 /24 or an IPv6 /48 of a public
-- address; NULL when unknown, private or loopback): a pack's shards go to distinct networks, so
-- that one house's power cut or one provider's outage takes at most one of them.
ALTER TABLE devices ADD COLUMN network TEXT;
