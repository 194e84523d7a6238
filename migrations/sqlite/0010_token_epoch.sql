-- A user's token epoch. Every token carries the epoch its user had when it was issued, and
-- a token whose epoch is not the user's current one is refused. A new user (also one added
-- again under a removed user's name) gets a fresh random epoch, so no token of the removed
-- user comes back; a password change or `sprout user revoke-tokens` draws a new one.
-- Users from before this column keep '' and the tokens they hold (which carry no epoch)
-- keep working until their epoch first changes.
ALTER TABLE users ADD COLUMN token_epoch TEXT NOT NULL DEFAULT '';
