// Turning untrusted text (PR titles, error messages, outputs) into inert Markdown for comments:
// inline code spans and fenced blocks whose fences are longer than any backtick run inside, so
// nothing in the text can become a mention, a link, HTML, an HTML comment or a forged marker.

function isControl(code: number, keepNewlines: boolean): boolean {
  if (keepNewlines && (code === 0x0a || code === 0x09)) return false;
  return (
    code < 0x20 ||
    code === 0x7f ||
    (code >= 0x80 && code < 0xa0) ||
    code === 0x2028 ||
    code === 0x2029 ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069)
  );
}

/** Control and bidi-override characters removed; newlines kept or folded. */
export function clean(text: string, keepNewlines = false): string {
  return [...text].map((c) => (isControl(c.codePointAt(0) ?? 0, keepNewlines) ? " " : c)).join("");
}

function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : text;
}

function longestRun(text: string, ch: string): number {
  let best = 0;
  let run = 0;
  for (const c of text) {
    run = c === ch ? run + 1 : 0;
    best = Math.max(best, run);
  }
  return best;
}

/** One line of untrusted text as an inline code span. `inTable` escapes `|` for GFM tables. */
export function inlineCode(text: string, options: { max?: number; inTable?: boolean } = {}): string {
  let t = truncate(clean(text).replace(/\s+/g, " ").trim(), options.max ?? 200);
  if (t === "") return "` `";
  if (options.inTable) t = t.replace(/\|/g, "\\|");
  const fence = "`".repeat(longestRun(t, "`") + 1);
  const pad = t.startsWith("`") || t.endsWith("`") ? " " : "";
  return `${fence}${pad}${t}${pad}${fence}`;
}

/** Multi-line untrusted text as a fenced code block. */
export function codeBlock(text: string, options: { max?: number; lang?: string } = {}): string {
  const t = truncate(clean(text, true), options.max ?? 6000).replace(/\s+$/, "");
  const fence = "`".repeat(Math.max(3, longestRun(t, "`") + 1));
  return `${fence}${options.lang ?? "text"}\n${t}\n${fence}`;
}

const SAFE_URL = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~/%:@!$&'()*+,;=-]*)?(\?[A-Za-z0-9._~/%:@!$&'()*+,;=?-]*)?(#[A-Za-z0-9._~/%-]*)?$/;

/** A URL we produced (environment, job link) as an autolink; anything unusual as inert code. */
export function link(url: string, label?: string): string {
  if (!SAFE_URL.test(url) || /\/\/[^/]*@/.test(url)) return inlineCode(url);
  return label ? `[${label.replace(/[[\]\\`*_<>]/g, "")}](${url})` : `<${url}>`;
}

export function isSafeUrl(url: string): boolean {
  return SAFE_URL.test(url) && !/\/\/[^/]*@/.test(url);
}
