-- E-mail digests of unread notifications, for those who opted in: when a notification was
-- put into a digest that was sent, and when a node took it to send (a claim older than a
-- few minutes is a node that died sending: it is taken again).
ALTER TABLE notifications ADD COLUMN emailed_at BIGINT;
ALTER TABLE notifications ADD COLUMN email_claimed_at BIGINT;
CREATE INDEX notifications_unmailed ON notifications (created_at)
    WHERE read_at IS NULL AND emailed_at IS NULL;
