/**
 * Which parser a document goes to (issue 7, criterion 1 and 3). Decided from the file name's
 * extension first (uploads, ZIP entries, URLs with a path like `/guide.pdf`), then from the
 * media type (URLs whose path says nothing, e.g. `/docs/` served as text/html). `null` means
 * unsupported: the API answers 415.
 */

export type DocumentFormat = 'text' | 'markdown' | 'html' | 'pdf' | 'docx' | 'source';

const formatByExtension: ReadonlyMap<string, DocumentFormat> = new Map<string, DocumentFormat>([
  ...(['.txt', '.text', '.log', '.csv', '.tsv'] as const).map((ext) => [ext, 'text'] as const),
  ...(['.md', '.markdown', '.mdx'] as const).map((ext) => [ext, 'markdown'] as const),
  ...(['.html', '.htm', '.xhtml'] as const).map((ext) => [ext, 'html'] as const),
  ['.pdf', 'pdf'] as const,
  ['.docx', 'docx'] as const,
  ...(
    [
      '.js', '.mjs', '.cjs', '.jsx', '.ts', '.mts', '.cts', '.tsx', '.vue', '.svelte',
      '.py', '.java', '.go', '.rb', '.php', '.c', '.h', '.cc', '.cpp', '.cxx', '.hpp', '.hh', '.cs',
      '.rs', '.kt', '.kts', '.swift', '.scala', '.m', '.lua', '.pl', '.r', '.dart', '.ex', '.exs', '.erl', '.hs',
      '.sh', '.bash', '.zsh', '.ps1', '.sql', '.graphql', '.proto',
      '.yaml', '.yml', '.json', '.toml', '.ini', '.cfg', '.conf', '.properties', '.xml',
      '.css', '.scss', '.less', '.tf', '.gradle',
    ] as const
  ).map((ext) => [ext, 'source'] as const),
]);

/** Extension-less file names that are source or text all the same. */
const formatByBaseName: ReadonlyMap<string, DocumentFormat> = new Map<string, DocumentFormat>([
  ['dockerfile', 'source'],
  ['makefile', 'source'],
  ['readme', 'text'],
  ['license', 'text'],
  ['changelog', 'text'],
]);

const formatByMediaType: ReadonlyMap<string, DocumentFormat> = new Map<string, DocumentFormat>([
  ['text/plain', 'text'],
  ['text/csv', 'text'],
  ['text/markdown', 'markdown'],
  ['text/x-markdown', 'markdown'],
  ['text/html', 'html'],
  ['application/xhtml+xml', 'html'],
  ['application/pdf', 'pdf'],
  ['application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'docx'],
  ['application/json', 'source'],
  ['application/xml', 'source'],
  ['text/xml', 'source'],
  ['application/yaml', 'source'],
  ['text/yaml', 'source'],
  ['application/javascript', 'source'],
  ['text/javascript', 'source'],
]);

/**
 * The format of a document named `name` (a file name, a path inside an archive, or a URL), or
 * `null` when we cannot parse it. `mediaType` (a Content-Type header, parameters allowed) is
 * consulted only when the name's extension is unknown, because servers often label everything
 * `application/octet-stream` or `text/plain`; a few well-known extension-less names (README,
 * Dockerfile, …) come last.
 */
export function formatOf(name: string, mediaType?: string): DocumentFormat | null {
  const baseName = baseNameOf(name).toLowerCase();
  for (const extension of extensionsOf(baseName)) {
    const format = formatByExtension.get(extension);
    if (format) return format;
  }
  const essence = mediaType?.split(';', 1)[0]?.trim().toLowerCase();
  const byMediaType = essence ? formatByMediaType.get(essence) : undefined;
  return byMediaType ?? formatByBaseName.get(baseName) ?? null;
}

/** The last path segment of a file path or URL (query and fragment dropped for URLs). */
function baseNameOf(name: string): string {
  const pathPart = /^[a-z][a-z0-9+.-]*:\/\//i.test(name) ? urlPathOf(name) : name;
  const segments = pathPart.split(/[/\\]/);
  return segments[segments.length - 1] ?? '';
}

function urlPathOf(url: string): string {
  let pathname: string;
  try {
    pathname = new URL(url).pathname;
  } catch {
    return url;
  }
  try {
    return decodeURIComponent(pathname);
  } catch {
    return pathname; // a stray `%` is not worth failing over
  }
}

/** Candidate extensions, longest first: `notes.v2.md` → `.v2.md`, `.md`. */
function extensionsOf(baseName: string): string[] {
  const extensions: string[] = [];
  // A leading dot is a hidden file's name, not an extension (`.bashrc`).
  for (let dot = baseName.indexOf('.', 1); dot !== -1; dot = baseName.indexOf('.', dot + 1)) {
    extensions.push(baseName.slice(dot));
  }
  return extensions;
}
