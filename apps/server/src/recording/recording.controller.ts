import { Controller, Get, Param, ParseUUIDPipe, Query, Req, StreamableFile, UseGuards } from '@nestjs/common';

import { AuthGuard, type AuthedRequest } from '../auth/auth.guard';
import { RecordingService } from './recording.service';

/**
 * `GET /api/sessions/{id}/recording`: the session's asciicast v2 recording, streamed after it was
 * checked against the size and SHA-256 of the close record (409 E_RECORDING_INTEGRITY when it
 * does not match). Its operator, auditors and admins only (403 with the reason otherwise); every
 * call is audited as `session_replay`. `?download=1` answers it as an attachment.
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
  ): Promise<StreamableFile> {
    const attach = download === '1' || download === 'true';
    const r = await this.recordings.open(id, req.principal, attach ? 'download' : 'replay');
    return new StreamableFile(r.stream, {
      type: 'application/x-asciicast',
      length: r.bytes,
      disposition: `${attach ? 'attachment' : 'inline'}; filename="session-${id}.cast"`,
    });
  }
}
