import { IsString, MaxLength } from 'class-validator';

import { LenientFields } from '../common/input-validation.pipe';

/** `POST /api/agents/tokens` (admin): the agent cluster a registration token is for. */
export class MintTokenDto {
  @IsString()
  @MaxLength(63)
  cluster!: string;
}

/**
 * `POST /api/agents/register`: an agent redeems its token with a CSR. Unknown fields are dropped,
 * not refused (a newer agent may send more).
 */
@LenientFields()
export class RegisterAgentDto {
  @IsString()
  @MaxLength(256)
  token!: string;

  @IsString()
  @MaxLength(63)
  cluster!: string;

  @IsString()
  @MaxLength(16_384)
  csr!: string;
}
