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

script!(
    ISSUE,
    "lua/session_issue.lua",
    "Issue a session within the subject's cap."
);
script!(
    ROTATE,
    "lua/session_rotate.lua",
    "Rotate a session's refresh token (check-and-set)."
);
script!(
    REVOKE_SESSION,
    "lua/session_revoke.lua",
    "Revoke one session."
);
script!(
    REVOKE_ACCESS,
    "lua/session_revoke_access.lua",
    "Revoke a session's access token."
);
script!(
    REVOKE_ALL,
    "lua/session_revoke_all.lua",
    "Revoke a subject's sessions and format-1 tokens."
);
script!(
    REVOKE_TOKEN_V1,
    "lua/revoke_token.lua",
    "Revoke one format-1 access token."
);
script!(
    REVOKE_FAMILY_V1,
    "lua/revoke_family.lua",
    "Revoke one format-1 family."
);
