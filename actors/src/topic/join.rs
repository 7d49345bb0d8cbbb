//! Joining a topic: the join's checks and reply, presence and the hand-off from the log to
//! live events for a join with `since` (pages of the log, then what is still in memory).

use super::*;

impl TopicActor {
    /// Reads the next page of the log for a catching-up subscriber.
    fn catch_up(&mut self, id: u64, generation: u64, ctx: &mut Context<Self>) {
        let (Some(ws), Some(sub)) = (self.workspace, self.subs.get(&id)) else {
            return;
        };
        let log = self.env.log.clone();
        let since = sub.cursor;
        let fut = async move { log.events_after(ws, since, PAGE).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let current = act.subs.get(&id).map(|s| s.generation) == Some(generation);
            if !current {
                return;
            }
            match res {
                Ok(events) => {
                    let progressed = !events.is_empty();
                    for ev in events {
                        act.send_missed(id, &ev);
                    }
                    act.finish_catch_up(id, generation, progressed, ctx);
                }
                Err(e) => {
                    tracing::warn!(topic = %act.name, error = %e, "cannot replay events");
                    act.drop_sub(id, Some("phx_error"));
                }
            }
        }));
    }

    /// Sends one replayed event to one subscriber if it is the next one it needs.
    fn send_missed(&mut self, id: u64, ev: &LiveEvent) -> bool {
        let shows = self.shows(ev);
        let name = self.name.clone();
        let Some(sub) = self.subs.get_mut(&id) else {
            return false;
        };
        if ev.offset != sub.cursor + 1 {
            return ev.offset <= sub.cursor;
        }
        sub.cursor = ev.offset;
        if shows {
            let frame = encode_parts(sub.join_ref.as_deref(), None, &name, "event", &*ev.payload);
            Stats::add(&self.env.stats.events_replayed, 1);
            self.env.stats.sent(Out::Event, 1);
            if !sub.conn.push(frame) {
                self.drop_sub(id, None);
                return false;
            }
        }
        true
    }

    fn finish_catch_up(
        &mut self,
        id: u64,
        generation: u64,
        progressed: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(cursor) = self.subs.get(&id).map(|s| s.cursor) else {
            return;
        };
        if let Some(missed) = self.seq.recent_after(cursor) {
            for ev in &missed {
                if !self.send_missed(id, ev) {
                    return;
                }
            }
        }
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let head = self.seq.head();
        if sub.cursor >= head || !progressed {
            // Caught up (or the log has nothing more to give): live from here.
            sub.catching_up = false;
            if sub.cursor > head {
                // The log was ahead of the live stream: skip what it already sent.
                sub.ahead = true;
            } else {
                sub.cursor = head;
                self.filtered -= 1;
            }
        } else {
            self.catch_up(id, generation, ctx);
        }
    }
}

impl Handler<Join> for TopicActor {
    type Result = bool;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> bool {
        let id = msg.conn.id;
        if self.subs.contains_key(&id) {
            self.drop_sub(id, None);
        }
        let user = msg.conn.user_id;
        if self
            .env
            .revoked_since(self.topic, self.workspace, user, msg.authorized_at)
        {
            // Allowed by a membership removed while this join was on its way.
            Stats::add(&self.env.stats.joins_refused, 1);
            let reply = encode_reply(
                msg.join_ref.as_deref(),
                msg.msg_ref.as_deref(),
                &self.name,
                ReplyStatus::Error,
                &json!({ "reason": Denied::Unauthorized.reason() }),
            );
            msg.conn.push(reply);
            self.schedule_idle_stop(ctx);
            return false;
        }
        if let Some(h) = self.idle.take() {
            ctx.cancel_future(h);
        }
        let mut response = msg.info;
        let head = self.seq.head();
        let mut cursor = head;
        let mut catching_up = false;
        if self.workspace.is_some() {
            if let Some(since) = msg.since {
                let recovered = since <= head && head - since <= self.env.limits.max_replay;
                if recovered {
                    cursor = since;
                    catching_up = since < head;
                }
                response.insert("recovered".into(), json!(recovered));
            }
            response.insert("offset".into(), json!(head));
        }
        let generation = self.env.next_id();
        let wants_presence = msg.track && self.has_presence();
        let room = self.tracked < self.env.limits.max_presence_metas;
        if wants_presence && !room {
            // The topic tracks as many as it may: this one joins without presence.
            Stats::add(&self.env.stats.presence_untracked, 1);
            response.insert("presence".into(), json!(false));
        }
        let presence = (wants_presence && room).then(|| {
            let mut fields = Map::new();
            fields.insert("online_at".into(), json!(now_ms()));
            PresenceMeta {
                phx_ref: self.new_ref(),
                phx_ref_prev: None,
                fields,
            }
        });
        let per_sec = self.env.limits.presence_updates_per_sec;
        let sub = Sub {
            conn: msg.conn,
            head: PushHead::new(&Push::head(msg.join_ref.as_deref())),
            join_ref: msg.join_ref,
            generation,
            cursor,
            catching_up,
            ahead: false,
            lane: 0,
            slot: 0,
            presence: presence.clone(),
            presence_limiter: Limiter::new(per_sec, per_sec),
            // Its own join (if tracked) is the next change, and its state will hold it.
            presence_seen: self.changes.last() + u64::from(presence.is_some()),
        };
        let reply = encode_reply(
            sub.join_ref.as_deref(),
            msg.msg_ref.as_deref(),
            &self.name,
            ReplyStatus::Ok,
            &response,
        );
        if !self.push_to(&sub, reply) {
            self.schedule_idle_stop(ctx);
            return false;
        }
        Stats::add(&self.stats().joins, 1);
        let kind = match self.topic {
            Topic::Workspace(_) => 0,
            Topic::Document(_) => 1,
            Topic::User(_) => 2,
        };
        Stats::add(&self.stats().joins_by_kind[kind], 1);
        self.env
            .stats
            .subscriptions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let user = sub.conn.user_id;
        self.subs.insert(id, sub);
        self.enlist(id);
        self.filtered += usize::from(catching_up);
        if self.has_presence() {
            if let Some(meta) = presence {
                self.tracked += 1;
                self.record(user.to_string(), meta, true);
            }
            // Its state goes out with the window's changes (and holds this join's own).
            self.state_waiting.push((id, generation));
            self.schedule_flush();
        }
        if catching_up {
            self.catch_up(id, generation, ctx);
        }
        true
    }
}
