// HTTP at the byte level, for `codejail serve`: a request written as given (whole, cut, or
// dribbled a few bytes at a time), its answer read back as status and body, or what happened
// instead ('hung': no answer while the connection stayed open; 'closed': closed unanswered).
import crypto from 'node:crypto';
import net from 'node:net';

export type HttpAnswer = { status: number; body: string } | { error: 'hung' | 'closed' | 'unparsable' | 'aborted' };

export interface RawOptions {
  timeoutMs?: number;
  /** Send `bytes` every `ms` instead of all at once, after the first `from` bytes (the headers). */
  dribble?: { bytes: number; ms: number; from?: number };
  /** Hang up this long after sending, answered or not ('aborted'). */
  closeAfterMs?: number;
  /** The client's address (any of 127/8): serve bounds bodies still arriving per address. */
  localAddress?: string;
}

function parse(all: Buffer): HttpAnswer {
  const m = all.toString('latin1', 0, 40).match(/^HTTP\/1\.[01] (\d{3})/);
  if (!m) return { error: 'unparsable' };
  const end = all.indexOf('\r\n\r\n');
  return { status: Number(m[1]), body: all.subarray(end + 4).toString() };
}

export function rawHttp(port: number, request: Buffer, options: RawOptions = {}): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: options.localAddress });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (answer: HttpAnswer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => finish({ error: 'hung' }), options.timeoutMs ?? 30_000);
    socket.on('connect', async () => {
      if (options.dribble) {
        const from = options.dribble.from ?? 0;
        if (from) socket.write(request.subarray(0, from));
        for (let i = from; i < request.length && !done; i += options.dribble.bytes) {
          socket.write(request.subarray(i, i + options.dribble.bytes));
          await new Promise((r) => setTimeout(r, options.dribble!.ms));
        }
      } else socket.write(request);
      if (options.closeAfterMs !== undefined) setTimeout(() => finish({ error: 'aborted' }), options.closeAfterMs);
    });
    socket.on('data', (d) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = all.subarray(0, end).toString().match(/content-length:\s*(\d+)/i);
      if (length && all.length >= end + 4 + Number(length[1])) finish(parse(all));
    });
    const closed = () => finish(chunks.length ? parse(Buffer.concat(chunks)) : { error: 'closed' });
    socket.on('error', closed);
    socket.on('close', closed);
  });
}

export function httpRequest(method: string, path: string, contentType: string | null, body: Buffer | string, extraHeaders = ''): Buffer {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const head = `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${contentType ? `Content-Type: ${contentType}\r\n` : ''}Content-Length: ${bytes.length}\r\n${extraHeaders}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), bytes]);
}

const formEncode = (fields: Record<string, string>) =>
  Object.entries(fields)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');

export const CODE_EXEC = '/api/v0/code-exec';

export function urlencoded(fields: Record<string, string>): Buffer {
  return httpRequest('POST', CODE_EXEC, 'application/x-www-form-urlencoded', formEncode(fields));
}

export interface Part {
  name: string;
  value: Buffer | string;
  filename?: string;
}

export function multipartBody(parts: Part[], boundary = `B${crypto.randomBytes(8).toString('hex')}`): { contentType: string; body: Buffer } {
  const bufs: Buffer[] = [];
  for (const p of parts) {
    bufs.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}\r\n${p.filename ? 'Content-Type: application/zip\r\n' : ''}\r\n`));
    bufs.push(Buffer.isBuffer(p.value) ? p.value : Buffer.from(p.value));
    bufs.push(Buffer.from('\r\n'));
  }
  bufs.push(Buffer.from(`--${boundary}--\r\n`));
  return { contentType: `multipart/form-data; boundary=${boundary}`, body: Buffer.concat(bufs) };
}

export function multipart(parts: Part[]): Buffer {
  const m = multipartBody(parts);
  return httpRequest('POST', CODE_EXEC, m.contentType, m.body);
}
