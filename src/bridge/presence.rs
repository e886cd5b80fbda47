//! Who is alive and who holds which nickname, kept in Redis (pure: key
//! names, the Lua scripts, and what their replies mean; the I/O is in
//! [`super::Bridge`]).
//!
//! - **Leases.** `{loopchat}:nodes` is a sorted set of node id -> expiry
//!   (milliseconds, Redis's clock). Each process renews its own every
//!   [`HEARTBEAT_EVERY`] for [`LEASE`] ([`HEARTBEAT`]).
//! - **Nicknames.** `{loopchat}:nicks` is a hash of lowercased nickname ->
//!   the node holding it, and `{loopchat}:held:<node>` the set of a node's
//!   nicknames (so a reaper finds them). [`CLAIM`] gives a name to a node
//!   whose lease is live if nobody else live holds it; [`RELEASE`] gives it
//!   back, only if it is still ours.
//! - **The reaper.** Every process runs [`REAP`] every [`REAP_EVERY`]: it
//!   removes the nodes whose lease expired with their nicknames, and
//!   publishes each one's id on [`CONTROL`], so every process forgets
//!   that node's users. It is idempotent: a second reaper finds nothing.
//!
//! Every script reads the time with `TIME` inside Redis, so the processes'
//! own clocks never matter, and each runs atomically: two claims of one
//! name cannot both win. Every key carries the `{loopchat}` hash tag, so
//! in a Redis Cluster they would share one slot.

use std::time::Duration;

use super::envelope::PREFIX;

/// How long a lease lasts without renewal: a process silent this long
/// (killed, stopped, cut off) is reaped.
pub const LEASE: Duration = Duration::from_secs(6);
/// How often a process renews its lease: three tries per lease.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How often each process runs the reaper: a dead process's users are
/// gone from everywhere within `LEASE` + this (+ a round trip).
pub const REAP_EVERY: Duration = Duration::from_secs(1);

/// The channel on which reapers announce dead nodes (payload: the id).
pub const CONTROL: &str = "{loopchat}:control";
/// The sorted set of leases.
pub const NODES: &str = "{loopchat}:nodes";
/// The hash of nickname claims.
pub const NICKS: &str = "{loopchat}:nicks";

/// The set of nicknames `node` holds.
pub fn held_key(node: &str) -> String {
    format!("{PREFIX}held:{node}")
}

/// Milliseconds on Redis's clock, first thing in each script.
const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: nodes. ARGV: node, lease in ms. Renews the lease; returns 1 if
/// it was still live, 0 if it had lapsed or was never there (a fresh
/// Redis, or we were reaped): then our nicknames must be claimed again.
pub const HEARTBEAT: &str = "
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if old and tonumber(old) >= now then return 1 end
return 0
";

/// KEYS: nodes, nicks, held:<node>. ARGV: node, lowercased nickname,
/// mode (`new` or `again`), the nickname as written, its longest length.
/// Returns `{'ok'}`, `{'taken'}`, `{'nolease'}`, or, for `again` (a
/// re-claim after Redis came back) of a name someone else took meanwhile,
/// `{'renamed', fallback}`: the first free `<name><n>`, claimed.
pub const CLAIM: &str = "
local function live(n)
  local e = redis.call('ZSCORE', KEYS[1], n)
  return e and tonumber(e) >= now
end
if not live(ARGV[1]) then return {'nolease'} end
local function free(k)
  local o = redis.call('HGET', KEYS[2], k)
  return (not o) or o == ARGV[1] or not live(o)
end
local function take(k)
  redis.call('HSET', KEYS[2], k, ARGV[1])
  redis.call('SADD', KEYS[3], k)
end
if free(ARGV[2]) then take(ARGV[2]) return {'ok'} end
if ARGV[3] ~= 'again' then return {'taken'} end
local max = tonumber(ARGV[5])
for i = 1, 9999 do
  local n = tostring(i)
  local name = string.sub(ARGV[4], 1, max - #n) .. n
  if free(string.lower(name)) then take(string.lower(name)) return {'renamed', name} end
end
return {'taken'}
";

/// KEYS: nicks, held:<node>. ARGV: node, lowercased nickname. Gives the
/// name up if we still hold it (after a collision it may be another's).
pub const RELEASE: &str = "
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[2]) end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
";

/// KEYS: nodes, nicks. ARGV: the held-set prefix, the control channel.
/// Removes every node whose lease expired, with the nicknames it still
/// holds, and announces each on the control channel. Returns their ids.
pub const REAP: &str = "
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now))
for _, n in ipairs(dead) do
  local held = ARGV[1] .. n
  for _, k in ipairs(redis.call('SMEMBERS', held)) do
    if redis.call('HGET', KEYS[2], k) == n then redis.call('HDEL', KEYS[2], k) end
  end
  redis.call('DEL', held)
  redis.call('ZREM', KEYS[1], n)
  redis.call('PUBLISH', ARGV[2], n)
end
return dead
";

/// KEYS: nodes, nicks. ARGV: the held-set prefix, the control channel,
/// node. A process stopping cleanly gives its lease and nicknames back at
/// once and announces itself gone, rather than leaving its names taken
/// until its lease runs out.
pub const RETIRE: &str = "
local held = ARGV[1] .. ARGV[3]
for _, k in ipairs(redis.call('SMEMBERS', held)) do
  if redis.call('HGET', KEYS[2], k) == ARGV[3] then redis.call('HDEL', KEYS[2], k) end
end
redis.call('DEL', held)
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// One of the scripts, with its full text (the clock first) and the SHA-1
/// that `EVALSHA` names it by.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: &'static str,
    pub text: String,
    pub sha: String,
}

impl Script {
    fn new(name: &'static str, body: &str, clock: bool) -> Script {
        let text = if clock {
            format!("{NOW}{body}")
        } else {
            body.to_string()
        };
        let sha = sha1_smol::Sha1::from(text.as_bytes()).digest().to_string();
        Script { name, text, sha }
    }
}

/// The scripts, loaded (`SCRIPT LOAD`) each time the command link
/// comes up, so `EVALSHA` finds them even in a Redis that just restarted.
#[derive(Debug, Clone)]
pub struct Scripts {
    pub heartbeat: Script,
    pub claim: Script,
    pub release: Script,
    pub reap: Script,
    pub retire: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            heartbeat: Script::new("heartbeat", HEARTBEAT, true),
            claim: Script::new("claim", CLAIM, true),
            release: Script::new("release", RELEASE, false),
            reap: Script::new("reap", REAP, true),
            retire: Script::new("retire", RETIRE, false),
        }
    }

    pub fn all(&self) -> [&Script; 5] {
        [
            &self.heartbeat,
            &self.claim,
            &self.release,
            &self.reap,
            &self.retire,
        ]
    }
}

impl Default for Scripts {
    fn default() -> Scripts {
        Scripts::new()
    }
}

/// Appends `EVALSHA <script> <number of keys> KEYS... ARGV...` to `out`.
pub fn evalsha(out: &mut Vec<u8>, script: &Script, keys: &[&[u8]], args: &[&[u8]]) {
    let n = keys.len().to_string();
    let mut all: Vec<&[u8]> = vec![b"EVALSHA", script.sha.as_bytes(), n.as_bytes()];
    all.extend_from_slice(keys);
    all.extend_from_slice(args);
    super::resp::command(out, &all);
}

/// What a claim's reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimReply {
    Ok,
    Taken,
    /// Our lease is not live (it lapsed; the next heartbeat renews it).
    NoLease,
    /// A re-claim found the name taken; this fallback was claimed instead.
    Renamed(String),
}

impl ClaimReply {
    /// Reads the script's reply (an array of bulk strings).
    pub fn read(reply: &super::resp::Value) -> Option<ClaimReply> {
        use super::resp::Value;
        let Value::Array(items) = reply else {
            return None;
        };
        let text = |i: usize| match items.get(i) {
            Some(Value::Bulk(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        };
        match text(0)? {
            "ok" => Some(ClaimReply::Ok),
            "taken" => Some(ClaimReply::Taken),
            "nolease" => Some(ClaimReply::NoLease),
            "renamed" => {
                let name = text(1)?;
                crate::protocol::validate_nick(name).ok()?;
                Some(ClaimReply::Renamed(name.to_string()))
            }
            _ => None,
        }
    }
}

/// A node id read from the control channel, if it is one we could have
/// published (printable, no spaces, not too long): anything else is
/// ignored rather than trusted.
pub fn read_node(payload: &[u8]) -> Option<&str> {
    let id = std::str::from_utf8(payload).ok()?;
    let ok = !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_graphic());
    ok.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::resp::Value;

    #[test]
    fn scripts_are_named_by_the_sha1_of_their_text() {
        let s = Scripts::new();
        // sha1("") as a sanity check of the hashing itself.
        assert_eq!(
            Script::new("e", "", false).sha,
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        for script in s.all() {
            assert_eq!(script.sha.len(), 40);
        }
        assert!(s.claim.text.starts_with("local t = redis.call('TIME')"));
        assert!(!s.release.text.contains("TIME"));
    }

    #[test]
    fn claim_replies() {
        let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
        let arr = |v: &[&str]| Value::Array(v.iter().map(|s| bulk(s)).collect());
        assert_eq!(ClaimReply::read(&arr(&["ok"])), Some(ClaimReply::Ok));
        assert_eq!(ClaimReply::read(&arr(&["taken"])), Some(ClaimReply::Taken));
        assert_eq!(
            ClaimReply::read(&arr(&["nolease"])),
            Some(ClaimReply::NoLease)
        );
        assert_eq!(
            ClaimReply::read(&arr(&["renamed", "bob1"])),
            Some(ClaimReply::Renamed("bob1".into()))
        );
        // A fallback that is not a valid nickname is not believed.
        assert_eq!(ClaimReply::read(&arr(&["renamed", "bo b"])), None);
        assert_eq!(ClaimReply::read(&arr(&["what"])), None);
        assert_eq!(ClaimReply::read(&Value::Int(1)), None);
    }

    #[test]
    fn node_ids_from_the_control_channel() {
        assert_eq!(read_node(b"host-42"), Some("host-42"));
        for bad in [&b""[..], b"a b", b"a\r\nb", b"\xff"] {
            assert_eq!(read_node(bad), None);
        }
    }
}
