import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';

/** The parts of yazl (a real ZIP writer; no type package installed) the harness uses. */
interface YazlZipFile {
  addBuffer(data: Buffer, name: string): void;
  addEmptyDirectory(name: string): void;
  end(): void;
  outputStream: Readable;
}
const yazl = createRequire(__filename)('yazl') as { ZipFile: new () => YazlZipFile };

/** A ZIP archive (deflated, as real tools write them) of `files` (name → content) and empty directories (names ending with `/`). */
export async function zipOf(files: Record<string, string>, emptyDirectories: string[] = []): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, content] of Object.entries(files)) zip.addBuffer(Buffer.from(content), name);
  for (const name of emptyDirectories) zip.addEmptyDirectory(name);
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
