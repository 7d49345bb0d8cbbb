-- Account self-service: notification preferences, and deletion (the row stays, emptied of
-- everything personal, so that what the person wrote keeps an author: "Deleted user").
ALTER TABLE users ADD COLUMN notification_preferences TEXT;
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
