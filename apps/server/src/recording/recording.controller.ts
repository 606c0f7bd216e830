import {
  Controller,
  Get,
  Param,
  ParseUUIDPipe,
  Query,
  Req,
  Res,
  StreamableFile,
  UseGuards,
} from '@nestjs/common';
import type { Response } from 'express';

import { AuthGuard, type AuthedRequest } from '../auth/auth.guard';
import { RecordingService } from './recording.service';

/** The response header naming the SHA-256 (hex) of the close record, for clients to check the bytes. */
export const RECORDING_SHA256_HEADER = 'X-Periscope-Recording-Sha256';

/**
 * `GET /api/sessions/{id}/recording`: the session's asciicast v2 recording, read once and checked
 * against the size and SHA-256 of the close record. A recording up to 4 MiB is checked before a
 * byte is sent (409 E_RECORDING_INTEGRITY when it does not match); a larger one is hashed while
 * it streams and its last chunk held back: on a mismatch the response is cut short of its
 * Content-Length (the client sees a failed transfer, the audit an integrity failure). The
 * expected SHA-256 is in the X-Periscope-Recording-Sha256 header. Its operator, auditors and
 * admins only (403 with the reason otherwise); every call is audited as `session_replay`.
 * `?download=1` answers it as an attachment.
 */
@Controller('sessions')
@UseGuards(AuthGuard)
export class RecordingController {
  constructor(private readonly recordings: RecordingService) {}

  @Get(':id/recording')
  async recording(
    @Param('id', new ParseUUIDPipe()) id: string,
    @Query('download') download: string | undefined,
    @Req() req: AuthedRequest,
    @Res({ passthrough: true }) res: Response,
  ): Promise<StreamableFile> {
    const attach = download === '1' || download === 'true';
    const r = await this.recordings.open(id, req.principal, attach ? 'download' : 'replay');
    res.setHeader(RECORDING_SHA256_HEADER, r.sha256);
    const file = new StreamableFile(r.stream, {
      type: 'application/x-asciicast',
      length: r.bytes,
      disposition: `${attach ? 'attachment' : 'inline'}; filename="session-${id}.cast"`,
    });
    // A failed check at the end: cut the response (never end it, which would look complete).
    file.setErrorHandler((_err, response) => {
      if (!response.destroyed) response.destroy?.();
    });
    return file;
  }
}
