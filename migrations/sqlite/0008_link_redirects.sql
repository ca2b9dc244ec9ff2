-- Every redirect counts toward a link's click limit, bots included: a crawler or a spoofed
-- user agent must not be a way around `max_clicks`. `clicks` stays the human count shown
-- in analytics; `redirects` is what the limit is enforced on.
ALTER TABLE links ADD COLUMN redirects BIGINT NOT NULL DEFAULT 0;
UPDATE links SET redirects = (SELECT COUNT(*) FROM link_clicks WHERE link_clicks.link_id = links.id);
