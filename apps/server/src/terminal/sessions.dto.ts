import {
  END_REASON_MAX_CHARS,
  END_REASON_PATTERN,
  END_REASON_RULE,
  OptionalField,
} from '@periscope/protocol';
import { IsString, Matches, MaxLength } from 'class-validator';

/**
 * `DELETE /api/sessions/{id}`: the optional body `{reason}`, a short free text saying why the
 * session is ended. It reaches the session's close audit record (`end_reason`) and the ended
 * operator's banner; see libs/protocol/src/end-reason.ts for what it may contain.
 */
export class EndSessionDto {
  @OptionalField()
  @IsString({ message: END_REASON_RULE })
  @MaxLength(END_REASON_MAX_CHARS, { message: END_REASON_RULE })
  @Matches(END_REASON_PATTERN, { message: END_REASON_RULE })
  reason?: string;
}
