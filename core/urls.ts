// Configured URLs without their credentials (issue 11, finding 10). A GITOPS_REPO, app repository
// or API URL may carry `user:token@` so that git or an HTTP client can authenticate; that user
// information must never be written anywhere else: not into a manifest, a commit message, a PR
// comment, a job record or a log line. Everything that renders a configured URL goes through
// publicUrl(); urlCredentials() gives the parts it removed, for the log scrubber's list.
//
// Parsed as text, not with WHATWG URL: that parser refuses `file://user:token@host/...` (which
// git accepts) and would silently normalise what it does accept.

/** scheme://[userinfo@]host..., the authority ending at the first `/`, `?` or `#`. */
const SCHEME_URL = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/s;
/** git's scp-like syntax: [user@]host:path (no scheme, no slash before the colon). */
const SCP_LIKE = /^([^/@:\s]+)@([^/:\s]+:.*)$/s;

/**
 * SSH logins (`git@`) name an account on the server, not a secret, and Argo CD needs them to
 * reach the repository; every other scheme's user name is dropped too (a bare `token@` is common).
 */
const KEEPS_USER = new Set(["ssh:", "git+ssh:", "ssh+git:"]);

interface Split {
  readonly prefix: string;
  readonly user: string;
  readonly password: string | undefined;
  readonly rest: string;
  readonly scheme: string | undefined;
}

function split(url: string): Split | null {
  const m = SCHEME_URL.exec(url);
  if (m) {
    const [, scheme = "", authority = "", rest = ""] = m;
    // The last `@` ends the user information: a password may hold an unescaped `@`.
    const at = authority.lastIndexOf("@");
    if (at < 0) return null;
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(":");
    return {
      prefix: scheme,
      user: colon < 0 ? userinfo : userinfo.slice(0, colon),
      password: colon < 0 ? undefined : userinfo.slice(colon + 1),
      rest: authority.slice(at + 1) + rest,
      scheme: scheme.slice(0, -2).toLowerCase(),
    };
  }
  const scp = SCP_LIKE.exec(url);
  if (scp) return { prefix: "", user: scp[1] ?? "", password: undefined, rest: scp[2] ?? "", scheme: undefined };
  return null;
}

/** The URL without its user information (an SSH login name is kept, never a password). */
export function publicUrl(url: string): string {
  const s = split(url);
  if (s === null) return url;
  if (s.scheme === undefined) return url; // scp-like: `git@host:path` carries a login, no secret
  const keepUser = KEEPS_USER.has(s.scheme) && s.user !== "";
  return `${s.prefix}${keepUser ? `${s.user}@` : ""}${s.rest}`;
}

/**
 * The secret parts publicUrl() removes, raw and percent-decoded (for the log scrubber). With a
 * password, the user is a name (`stackrail`, `oauth2`, `x-access-token`) that manifests may well
 * contain, so only the password counts; without one, the user slot holds the token itself.
 */
export function urlCredentials(url: string): string[] {
  const s = split(url);
  if (s === null || s.scheme === undefined) return [];
  const secret = s.password ?? (KEEPS_USER.has(s.scheme) ? undefined : s.user);
  const parts = [secret].filter((p): p is string => p !== undefined && p !== "");
  const out = new Set<string>();
  for (const p of parts) {
    out.add(p);
    try {
      out.add(decodeURIComponent(p));
    } catch {
      // not percent-encoded text: the raw value is enough
    }
  }
  return [...out];
}

/** Replaces the user information of every URL inside a text (git and drivers echo URLs in errors). */
export function stripUrlCredentials(text: string): string {
  return text.replace(/\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^\s/?#]*)@/g, (_m, scheme: string, userinfo: string) => {
    const s = scheme.slice(0, -2).toLowerCase();
    const user = userinfo.split(":")[0] ?? "";
    return KEEPS_USER.has(s) && !userinfo.includes(":") && user !== "" ? `${scheme}${user}@` : scheme;
  });
}
