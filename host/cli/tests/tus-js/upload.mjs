// Uploads one file to a mediahost tus endpoint with the official tus-js-client, the way a
// Node app would: a file stream, chunked PATCHes, upload URLs remembered on disk by fingerprint.
//
// Usage: node upload.mjs '<json options>'
//   endpoint, file, key, chunkSize, storage (the FileUrlStorage file),
//   abortAt (optional): abort the upload (as a closed tab or a dropped connection would) once
//     this many bytes are confirmed, leaving it resumable;
//   resume (optional): require a previous upload of the same file and continue it;
//   tus (optional): more tus-js-client options, as they are (e.g. overridePatchMethod,
//     parallelUploads, uploadLengthDeferred, uploadDataDuringCreation).
// Prints one JSON line per event on stdout: created (with the request's Upload-Concat),
// patched (with the HTTP method the request went out with), aborted, resumed, done; errors
// exit 1.
import * as fs from 'node:fs';
import { Upload, FileUrlStorage } from 'tus-js-client';

const opts = JSON.parse(process.argv[2]);
const say = (event) => console.log(JSON.stringify(event));
const size = fs.statSync(opts.file).size;

const upload = new Upload(fs.createReadStream(opts.file), {
  endpoint: opts.endpoint,
  chunkSize: opts.chunkSize,
  retryDelays: [0, 250, 500, 1000, 2000],
  headers: { Authorization: `Bearer ${opts.key}` },
  metadata: { filename: 'clip.mp4', filetype: 'video/mp4', title: 'tus-js-client upload' },
  urlStorage: new FileUrlStorage(opts.storage),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: true,
  ...opts.tus,
  onAfterResponse(req, res) {
    // With overridePatchMethod the PATCHes go out as POSTs, told apart by the override.
    const method = req.getHeader('X-HTTP-Method-Override') ?? req.getMethod();
    if (method === 'POST') {
      say({
        event: 'created',
        url: res.getHeader('Location'),
        videoId: res.getHeader('Mediahost-Video-Id') ?? null,
        concat: req.getHeader('Upload-Concat') ?? null,
      });
    } else if (method === 'PATCH') {
      say({ event: 'patched', method: req.getMethod(), offset: Number(res.getHeader('Upload-Offset')) });
    } else if (method === 'HEAD') {
      say({ event: 'resumed', offset: Number(res.getHeader('Upload-Offset')) });
    }
  },
  onProgress(sent) {
    if (opts.abortAt !== undefined && sent >= opts.abortAt && !upload.abortedHere) {
      upload.abortedHere = true;
      // `false`: keep the upload on the server so it can be resumed.
      upload.abort(false).then(() => {
        say({ event: 'aborted', url: upload.url, sent });
        process.exit(0);
      });
    }
  },
  onError(error) {
    console.error(`upload failed: ${error}`);
    process.exit(1);
  },
  onSuccess() {
    say({ event: 'done', url: upload.url, size });
  },
});

if (opts.resume) {
  const previous = await upload.findPreviousUploads();
  if (previous.length === 0) {
    console.error('no previous upload of this file was remembered');
    process.exit(1);
  }
  upload.resumeFromPreviousUpload(previous[0]);
}
upload.start();
