//! The Lua scripts that make each multi-key operation atomic.
//!
//! Each script is the shared prelude (`lua/prelude.lua`) followed by its own
//! body; all keys one script touches share the subject's hash tag.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal, $doc:literal) => {
        #[doc = $doc]
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                "\n",
                include_str!($file)
            ))
        });
    };
}

script!(ISSUE, "lua/issue.lua", "Issue tokens of one subject.");
script!(
    INSPECT,
    "lua/inspect.lua",
    "Classify a presented refresh token."
);
script!(ROTATE, "lua/rotate.lua", "Rotate a refresh token.");
script!(
    REVOKE_TOKEN,
    "lua/revoke_token.lua",
    "Revoke one access token."
);
script!(REVOKE_FAMILY, "lua/revoke_family.lua", "Revoke one family.");
script!(
    REVOKE_ALL,
    "lua/revoke_all.lua",
    "Revoke a subject's tokens."
);
