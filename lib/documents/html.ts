import type { Handler } from 'htmlparser2';

/**
 * HTML → markdown-like plain text, for HTML documents and for DOCX (which mammoth turns into
 * HTML). Headings become `#` lines so the chunker can split at them; paragraphs are separated by
 * blank lines; list items become `- ` / `1. ` lines; `<pre>` becomes a fenced code block; table
 * rows become one line with cells separated by ` | `. Page chrome and non-text elements are
 * dropped with everything inside them. Entities are decoded by htmlparser2.
 *
 * The result is not normalised yet (parse.ts does that once for every format).
 */

export interface HtmlConversion {
  text: string;
  /** `<title>`, else the first `<h1>`; null when neither has text. */
  title: string | null;
}

/**
 * Elements dropped with their whole content: code, page chrome, embedded non-text, form
 * controls. A `<form>` itself is not dropped, only its controls: ASP.NET WebForms pages wrap
 * their entire body in one.
 */
const DROPPED_ELEMENTS = new Set([
  'script', 'style', 'noscript', 'template', 'nav', 'aside', 'svg', 'math', 'iframe', 'object', 'embed',
  'canvas', 'video', 'audio', 'map', 'dialog', 'select', 'button', 'textarea', 'label', 'fieldset',
]);

/**
 * The page's banner and footer. Inside an article, section or main element the same tags hold
 * that content's own heading and byline (HTML's sectioning rules), which we keep.
 */
const PAGE_CHROME_ELEMENTS = new Set(['header', 'footer']);
const CONTENT_SECTIONS = new Set(['article', 'section', 'main']);

/** Elements that end the current paragraph where they open and close. */
const BLOCK_ELEMENTS = new Set([
  'html', 'body', 'main', 'article', 'section', 'div', 'p', 'blockquote', 'address', 'center',
  'figure', 'figcaption', 'details', 'summary', 'dl', 'dt', 'dd', 'ul', 'ol', 'menu', 'li',
  'table', 'caption', 'thead', 'tbody', 'tfoot', 'tr', 'pre', 'hr', 'header', 'footer',
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
]);

/** A line break inside a paragraph (`<br>`), kept apart from source whitespace until the paragraph is collapsed. */
const LINE_BREAK = Symbol('br');
type InlinePart = string | typeof LINE_BREAK;

interface OutputBlock {
  text: string;
  /** List items and table rows of the same list or table: joined by one newline, not a blank line. */
  joinsPrevious: boolean;
}

interface OpenList {
  ordered: boolean;
  nextNumber: number;
}

/** Converts `html` (a whole document or a fragment). */
export async function htmlToMarkdown(html: string): Promise<HtmlConversion> {
  // htmlparser2 is ESM-only: a dynamic import loads it from CommonJS on every Node 20 release.
  const { Parser } = await import('htmlparser2');
  const writer = new MarkdownWriter();
  const parser = new Parser(writer, { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true });
  parser.end(html);
  return writer.result();
}

class MarkdownWriter implements Partial<Handler> {
  private readonly blocks: OutputBlock[] = [];
  private inline: InlinePart[] = [];
  /** > 0 inside a dropped element (counts the elements open inside it). */
  private droppedDepth = 0;
  /** Open article, section and main elements. */
  private contentSectionDepth = 0;
  private preDepth = 0;
  private headingLevel = 0;
  private readonly lists: OpenList[] = [];
  /** The `- ` or `1. ` still to be written before the current list item's first text. */
  private pendingItemMarker: string | null = null;
  /** > 0 inside a table cell; a nested table's cells are flattened into the outer cell. */
  private cellDepth = 0;
  private rowCells: string[] | null = null;
  private inTitle = false;
  private titleText = '';
  private firstH1: string | null = null;
  /** Whether the last block written was a list item or table row of a list or table still open. */
  private inTightGroup = false;

  onopentag(name: string, attributes: Record<string, string>): void {
    const isPageChrome = PAGE_CHROME_ELEMENTS.has(name) && this.contentSectionDepth === 0;
    if (this.droppedDepth > 0 || DROPPED_ELEMENTS.has(name) || isPageChrome || isHidden(attributes)) {
      this.droppedDepth += 1;
      return;
    }
    if (CONTENT_SECTIONS.has(name)) this.contentSectionDepth += 1;
    if (name === 'title') {
      this.inTitle = true;
      return;
    }
    if (name === 'br') {
      this.inline.push(this.preDepth > 0 ? '\n' : LINE_BREAK);
      return;
    }
    if (this.cellDepth > 0) {
      // Inside a table cell everything is flattened into the cell's text.
      if (name === 'td' || name === 'th') this.cellDepth += 1;
      if (BLOCK_ELEMENTS.has(name) || name === 'td' || name === 'th') this.inline.push(' ');
      return;
    }
    if (this.preDepth > 0) {
      if (name === 'pre') this.preDepth += 1;
      return;
    }
    switch (name) {
      case 'td':
      case 'th':
        this.flushParagraph();
        this.rowCells ??= [];
        this.cellDepth = 1;
        return;
      case 'pre':
        this.flushParagraph();
        this.preDepth = 1;
        return;
      case 'ul':
      case 'ol':
      case 'menu':
        this.flushParagraph();
        this.lists.push({ ordered: name === 'ol', nextNumber: numberAttribute(attributes.start) ?? 1 });
        return;
      case 'li': {
        this.flushParagraph();
        const list = this.lists[this.lists.length - 1];
        const indent = '  '.repeat(Math.max(0, this.lists.length - 1));
        if (list?.ordered) {
          this.pendingItemMarker = `${indent}${list.nextNumber}. `;
          list.nextNumber += 1;
        } else {
          this.pendingItemMarker = `${indent}- `;
        }
        return;
      }
      default:
        if (/^h[1-6]$/.test(name)) {
          this.flushParagraph();
          this.headingLevel = Number(name[1]);
        } else if (BLOCK_ELEMENTS.has(name)) {
          this.flushParagraph();
        }
    }
  }

  onclosetag(name: string): void {
    if (this.droppedDepth > 0) {
      this.droppedDepth -= 1;
      return;
    }
    if (CONTENT_SECTIONS.has(name)) this.contentSectionDepth -= 1;
    if (name === 'title') {
      this.inTitle = false;
      return;
    }
    if (this.cellDepth > 0) {
      if (name === 'td' || name === 'th') {
        this.cellDepth -= 1;
        if (this.cellDepth === 0) {
          this.rowCells?.push(collapseInline(this.inline).replace(/\n/g, ' '));
          this.inline = [];
        } else {
          this.inline.push(' ');
        }
      } else if (BLOCK_ELEMENTS.has(name)) {
        this.inline.push(' ');
      }
      return;
    }
    if (name === 'pre') {
      this.preDepth -= 1;
      if (this.preDepth === 0) this.flushPreformatted();
      return;
    }
    if (this.preDepth > 0) return;
    switch (name) {
      case 'tr':
      case 'table':
        this.flushParagraph();
        this.flushRow();
        if (name === 'table') this.inTightGroup = false;
        return;
      case 'ul':
      case 'ol':
      case 'menu':
        this.flushParagraph();
        this.lists.pop();
        if (this.lists.length === 0) this.inTightGroup = false;
        return;
      case 'li':
        this.flushParagraph();
        this.pendingItemMarker = null; // an empty item writes nothing
        return;
      default:
        if (/^h[1-6]$/.test(name)) {
          this.flushParagraph();
          this.headingLevel = 0;
        } else if (BLOCK_ELEMENTS.has(name)) {
          this.flushParagraph();
        }
    }
  }

  ontext(data: string): void {
    if (this.droppedDepth > 0) return;
    if (this.inTitle) {
      this.titleText += data;
      return;
    }
    this.inline.push(data);
  }

  result(): HtmlConversion {
    this.flushParagraph();
    this.flushRow();
    const text = this.blocks.map((block, index) => (index === 0 ? '' : block.joinsPrevious ? '\n' : '\n\n') + block.text).join('');
    const title = collapseWhitespace(this.titleText) || this.firstH1;
    return { text, title: title || null };
  }

  /** Ends the current paragraph, heading or list item. */
  private flushParagraph(): void {
    const parts = this.inline;
    this.inline = [];
    if (this.rowCells !== null && this.rowCells.length > 0 && this.cellDepth === 0) {
      // Text between cells of a row (whitespace, mostly) belongs to no cell.
      if (collapseInline(parts) === '') return;
      this.flushRow();
    }
    const text = collapseInline(parts);
    if (text === '') return;
    if (this.headingLevel > 0) {
      const headingText = text.replace(/\n/g, ' ');
      if (this.headingLevel === 1) this.firstH1 ??= headingText;
      this.push(`${'#'.repeat(this.headingLevel)} ${headingText}`, false);
      return;
    }
    const escaped = escapeHeadingLookalikes(text);
    if (this.pendingItemMarker !== null) {
      const marker = this.pendingItemMarker;
      this.pendingItemMarker = null;
      this.push(marker + escaped.replace(/\n/g, `\n${' '.repeat(marker.length)}`), true);
    } else if (this.lists.length > 0) {
      // A second paragraph of a list item: indented under it.
      const indent = '  '.repeat(this.lists.length);
      this.push(indent + escaped.replace(/\n/g, `\n${indent}`), true);
    } else {
      this.push(escaped, false);
    }
  }

  private flushRow(): void {
    const cells = this.rowCells;
    this.rowCells = null;
    if (cells && cells.some((cell) => cell !== '')) this.push(escapeHeadingLookalikes(cells.join(' | ')), true);
  }

  private flushPreformatted(): void {
    const raw = this.inline.map((part) => (part === LINE_BREAK ? '\n' : part)).join('');
    this.inline = [];
    // Like browsers: one newline right after <pre> is not content.
    const code = raw.replace(/^\r?\n/, '').trimEnd();
    if (code.trim() === '') return;
    // A fence longer than any backtick run inside, so the block cannot end early.
    const longestBacktickRun = Math.max(0, ...Array.from(code.matchAll(/`+/g), (match) => match[0].length));
    const fence = '`'.repeat(Math.max(3, longestBacktickRun + 1));
    this.push(`${fence}\n${code}\n${fence}`, false);
  }

  /** `tight`: a list item or table row, one newline after the previous item or row of the same list or table. */
  private push(text: string, tight: boolean): void {
    this.blocks.push({ text, joinsPrevious: tight && this.inTightGroup });
    this.inTightGroup = tight;
  }
}

/** `hidden` or `aria-hidden="true"`: not shown to readers, so not part of the document's text. */
function isHidden(attributes: Record<string, string>): boolean {
  return attributes.hidden !== undefined || attributes['aria-hidden'] === 'true';
}

function numberAttribute(value: string | undefined): number | null {
  const parsed = value === undefined ? NaN : Number.parseInt(value, 10);
  return Number.isFinite(parsed) ? parsed : null;
}

/** HTML whitespace collapsed to single spaces; `<br>` kept as a newline. */
function collapseInline(parts: InlinePart[]): string {
  return parts
    .map((part) => (part === LINE_BREAK ? '\n' : collapseWhitespace(part, false)))
    .join('')
    .replace(/ {2,}/g, ' ')
    .replace(/ *\n */g, '\n')
    .trim();
}

function collapseWhitespace(text: string, trim = true): string {
  const collapsed = text.replace(/[ \t\n\r\f]+/g, ' ');
  return trim ? collapsed.trim() : collapsed;
}

/** A paragraph line that starts like a markdown heading (`#1 priority`) is escaped, so only real headings split chunks. */
function escapeHeadingLookalikes(text: string): string {
  return text.replace(/^(#{1,6})(?=\s|$)/gm, '\\$1');
}
