import { OptionalField } from '@periscope/protocol';
import { IsString, MaxLength } from 'class-validator';

/** `GET /api/auth/login?returnTo=/path`: where to go after sign-in (see safeReturnTo). */
export class LoginQueryDto {
  @OptionalField()
  @IsString({ message: 'returnTo may be given once, as a relative path' })
  @MaxLength(2048)
  returnTo?: string;
}

/** `POST /api/auth/dev-login`: the dev user to sign in as. */
export class DevLoginDto {
  @IsString()
  @MaxLength(256)
  subject!: string;
}
